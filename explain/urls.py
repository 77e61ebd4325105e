from django.urls import path

from explain import views

app_name = "explain"
urlpatterns = [path("", views.explain, name="explain")]
