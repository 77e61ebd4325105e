from django.urls import path

from handover import views

app_name = "handover"
urlpatterns = [
    path("", views.mine, name="mine"),
    path("edit/", views.edit, name="edit"),
    path("delete/", views.delete, name="delete"),
    path("shared/", views.shared, name="shared"),
    path("all/", views.all_notes, name="all"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/print/", views.printable, name="print"),
]
