from django.urls import path

from accounts import converters  # noqa: F401 -- registers <uid:...>
from mfa import views

app_name = "mfa"
urlpatterns = [
    path("", views.security, name="security"),
    path("verify/", views.verify, name="verify"),
    path("enrol/", views.enrol, name="enrol"),
    path("app/", views.totp_add, name="totp_add"),
    path("app/remove/", views.totp_remove, name="totp_remove"),
    path("passkeys/new/", views.passkey_add, name="passkey_add"),
    path("passkeys/<int:pk>/remove/", views.passkey_remove, name="passkey_remove"),
    path("recovery-codes/", views.recovery_codes, name="recovery_codes"),
    path("people/<uid:uid>/reset/", views.reset, name="reset"),
]
