from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class SignInFailure(models.Model):
    """One failed sign-in; recent ones throttle the account and the client address."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    username = models.CharField(max_length=150, db_index=True)
    client_address = models.GenericIPAddressField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.username} from {self.client_address}"

    @classmethod
    def is_throttled(cls, username: str, client_address: str | None) -> bool:
        since = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW)
        recent = cls.objects.filter(created_at__gte=since)
        limit = settings.LOGIN_FAILURE_LIMIT
        if recent.filter(username=username.lower()).count() >= limit:
            return True
        return client_address is not None and recent.filter(client_address=client_address).count() >= limit

    @classmethod
    def record(cls, username: str, client_address: str | None) -> None:
        cls.objects.create(username=username.lower()[:150], client_address=client_address)
        # Old rows are of no use to the throttle.
        cutoff = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW * 2)
        cls.objects.filter(created_at__lt=cutoff).delete()
