"""Personal API tokens: a person's key for the alias API (api/endpoints.py, api/compat.py).

Only the SHA-256 of a token is stored: the token has 256 random bits, so a fast hash is enough
(nobody can try 2^256 values) and a database copy gives no usable token. The first characters
(`display_prefix`) are kept in clear so people can tell their tokens apart.
"""

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        READ = "read", "read aliases"
        MANAGE = "manage", "read and manage aliases"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.MANAGE)
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token, hex")
    display_prefix = models.CharField(max_length=16, help_text="the token's first characters, to recognise it")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "created_at"]), models.Index(fields=["revoked_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def is_active(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and not self.is_expired(now)

    @property
    def may_manage(self) -> bool:
        return self.scope == self.Scope.MANAGE


class ApiTokenAddress(models.Model):
    """A client address a token was used from: the first use from a new one is audited."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="addresses")
    address = models.GenericIPAddressField()
    first_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "address"], name="api_token_address_unique")]

    def __str__(self) -> str:
        return self.address
