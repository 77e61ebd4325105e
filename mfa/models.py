"""Second factors of people: TOTP authenticators, passkeys and one-time recovery codes.

Keyed by the Django user row the sign-in backend keeps for everyone who ever signed in: a
factor belongs to a sign-in, and removing the row (the person is gone) removes the factors.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class TotpDevice(models.Model):
    """An authenticator app (RFC 6238: SHA-1, 6 digits, 30-second steps, what every app reads
    from the QR code). The secret is stored sealed (mfa/sealing.py)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_devices")
    sealed_secret = models.TextField()
    # The last time step whose code was accepted: that code, and any older one, is refused.
    last_step = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user"], name="mfa_one_totp_device_per_person")]

    def __str__(self) -> str:
        return f"authenticator app of {self.user_id}"


class Passkey(models.Model):
    """A WebAuthn credential (a passkey or a security key), named by its owner."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="passkeys")
    name = models.CharField(max_length=64)
    credential_id = models.CharField(max_length=1400, unique=True, help_text="base64url")
    public_key = models.BinaryField()
    sign_count = models.BigIntegerField(default=0)
    transports = models.CharField(max_length=200, blank=True, help_text="comma-separated hints")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="mfa_passkey_names_unique_per_person")]

    def __str__(self) -> str:
        return self.name


class RecoveryCode(models.Model):
    """One of ten one-time codes, stored as the SHA-256 of the code (80 random bits: a fast
    hash is enough, no one can try 2^80 codes)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"recovery code of {self.user_id}"


class SecondFactorFailure(models.Model):
    """One failed (or, while it is checked, pending) code; mfa/throttle.py."""

    username = models.CharField(max_length=150, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username}"


class ResetNotice(models.Model):
    """The mail telling a person that their second factors were removed. Kept until Postfix took
    it, so a notice survives Postfix or the worker being down (mfa/tasks.py retries)."""

    uid = models.CharField(max_length=64)
    reset_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"reset notice for {self.uid}"
