from django.urls import path

from limits import views

app_name = "limits"
urlpatterns = [
    path("", views.limit_list, name="list"),
    path("<int:pk>/", views.limit_edit, name="edit"),
    path("<int:pk>/delete/", views.limit_delete, name="delete"),
    path("senders/", views.senders, name="senders"),
]
