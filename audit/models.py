from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, models
from django.http import HttpRequest


class AuditEvent(models.Model):
    """Something a person did, or the system did on its own (actor is then empty).

    `detail` is free text for people; it must never hold a password, a hash or a secret.
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="uid of the actor, kept if the user row goes")
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True, db_index=True, help_text="uid or address acted on")
    client_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["actor_name", "created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or 'system'} {self.action} {self.target}"


def client_address(request: HttpRequest | None) -> str | None:
    # REMOTE_ADDR only: behind a reverse proxy, the proxy must set it (see docs/deploy.md).
    return request.META.get("REMOTE_ADDR") if request is not None else None


def record_event(
    action: str,
    *,
    request: HttpRequest | None = None,
    actor: object | None = None,
    target: str = "",
    detail: str = "",
) -> AuditEvent:
    """Record an audit event; the actor defaults to the request's signed-in user."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    user = actor if isinstance(actor, User) else None
    return AuditEvent.objects.create(
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        action=action,
        target=target,
        client_address=client_address(request),
        detail=detail,
    )


class AuditLogUnavailable(Exception):
    """The audit log cannot be written."""


def require_audit_log() -> None:
    """For commands that change other systems: fail before changing anything when their events
    could not be recorded (the database not migrated yet, or not answering)."""
    try:
        AuditEvent.objects.exists()
    except DatabaseError as exc:
        raise AuditLogUnavailable(f"the audit log cannot be written ({exc}); run manage.py migrate first") from None
