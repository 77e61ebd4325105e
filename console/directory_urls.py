from django.urls import path

from accounts import converters  # noqa: F401 -- registers <uid:...>
from console import directory_views as views

app_name = "directory"
urlpatterns = [
    path("", views.user_list, name="list"),
    path("new/", views.user_create, name="create"),
    path("users/<uid:uid>/", views.user_detail, name="detail"),
    path("users/<uid:uid>/password/", views.user_reset_password, name="reset_password"),
    path("users/<uid:uid>/disable/", views.user_disable, name="disable"),
    path("users/<uid:uid>/suspend/", views.user_suspend, name="suspend"),
    path("users/<uid:uid>/reinstate/", views.user_reinstate, name="reinstate"),
]
