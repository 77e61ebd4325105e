from django.urls import path  # noqa: F401

app_name = "outofoffice"
urlpatterns: list = []  # type: ignore[type-arg]
