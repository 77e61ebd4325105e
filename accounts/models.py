from django.conf import settings
from django.db import models
from django.utils import timezone


class SignInFailure(models.Model):
    """One failed (or, while its password is checked, pending) sign-in; accounts/throttle.py."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    username = models.CharField(max_length=150, db_index=True)
    client_address = models.GenericIPAddressField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username} from {self.client_address}"


class SenderSuspensionQuerySet(models.QuerySet["SenderSuspension"]):
    def active(self) -> "SenderSuspensionQuerySet":
        return self.filter(lifted_at__isnull=True)


class SenderSuspension(models.Model):
    """A user barred from sending mail. Keyed by uid: the user may never have signed in here.

    While lifted_at is empty the user's LDAP sender-block flag is TRUE and the sender_access
    map rejects every address they may send as. The reason is for people only; it never
    reaches an SMTP reply.
    """

    uid = models.CharField(max_length=64, db_index=True)
    mail = models.CharField(max_length=320, help_text="the mailbox address when suspended")
    reason = models.TextField(max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    until = models.DateTimeField(null=True, blank=True, db_index=True, help_text="lifts by itself then")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Empty with lifted_at set: lifted by the system at the end date.
    lifted_by_name = models.CharField(max_length=150, blank=True)

    objects = SenderSuspensionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["uid"], condition=models.Q(lifted_at__isnull=True), name="one_active_suspension_per_uid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.uid} suspended {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None
