from django.urls import path

from accounts import converters  # noqa: F401 -- registers <uid:...>
from outofoffice import views

app_name = "outofoffice"
urlpatterns = [
    path("vacation/", views.vacation, name="vacation"),
    path("vacation/preview/", views.preview, name="preview"),
    path("helpdesk/", views.helpdesk, name="helpdesk"),
    path("helpdesk/<uid:uid>/", views.helpdesk_user, name="helpdesk_user"),
    path("helpdesk/<uid:uid>/clear/", views.helpdesk_clear, name="helpdesk_clear"),
    path("helpdesk/<uid:uid>/preview/", views.helpdesk_preview, name="helpdesk_preview"),
]
