from django.urls import path  # noqa: F401

app_name = "aliases"
urlpatterns: list = []  # type: ignore[type-arg]
