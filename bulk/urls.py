from django.urls import path

from bulk import views

app_name = "bulk"
urlpatterns = [
    path("", views.index, name="index"),
    path("imports/<int:pk>/", views.job_detail, name="job"),
    path("imports/<int:pk>/import/", views.job_apply, name="apply"),
    path("imports/<int:pk>/passwords/", views.job_passwords, name="passwords"),
    path("export/", views.export, name="export"),
]
