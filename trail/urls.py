from django.urls import path

from trail import views

app_name = "trail"
urlpatterns = [
    path("", views.search, name="search"),
    path("<int:pk>/", views.detail, name="detail"),
]
