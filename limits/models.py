from django.db import models
from django.utils import timezone


class SendingLimit(models.Model):
    """An admin's override of the soft outbound limits for one mail domain or one person (uid).
    An empty field keeps the value from the next wider scope (person, then domain, then the
    settings)."""

    DOMAIN = "domain"
    PERSON = "person"
    SCOPES = [(DOMAIN, "Mail domain"), (PERSON, "Person (uid)")]

    scope = models.CharField(max_length=10, choices=SCOPES)
    name = models.CharField(max_length=253, help_text="the domain or the uid")
    messages_per_hour = models.PositiveIntegerField(null=True, blank=True)
    recipients_per_hour = models.PositiveIntegerField(null=True, blank=True)
    recipients_per_day = models.PositiveIntegerField(null=True, blank=True)
    recipients_per_message = models.PositiveIntegerField(null=True, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["scope", "name"]
        constraints = [models.UniqueConstraint(fields=["scope", "name"], name="one_sending_limit_per_scope")]

    def __str__(self) -> str:
        return f"{self.scope} {self.name}"
