from django.urls import path, register_converter

from accounts import directory_views as views


class UidConverter:
    regex = r"[a-z][a-z0-9._-]{0,63}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "uid")

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
