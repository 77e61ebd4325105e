from django.urls import path

from outofoffice import views

app_name = "outofoffice"
urlpatterns = [
    path("vacation/", views.vacation, name="vacation"),
    path("vacation/preview/", views.preview, name="preview"),
    path("helpdesk/", views.helpdesk, name="helpdesk"),
    path("helpdesk/<str:uid>/", views.helpdesk_user, name="helpdesk_user"),
    path("helpdesk/<str:uid>/clear/", views.helpdesk_clear, name="helpdesk_clear"),
    path("helpdesk/<str:uid>/preview/", views.helpdesk_preview, name="helpdesk_preview"),
]
