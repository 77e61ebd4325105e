from django.urls import path

from api import views

app_name = "tokens"
urlpatterns = [
    path("", views.token_list, name="list"),
    path("<int:pk>/revoke/", views.token_revoke, name="revoke"),
    path("all/", views.all_tokens, name="all"),
    path("all/<int:pk>/revoke/", views.staff_revoke, name="staff_revoke"),
    path("help/", views.api_help, name="help"),
]
