import hashlib
from datetime import datetime, timedelta

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DEFAULT_INTERVAL_DAYS = 7


class VacationReply(models.Model):
    """One user's vacation reply. Keyed by uid and mailbox address (the responder looks up by
    address), so helpdesk can set it for a user who has never signed in here."""

    uid = models.CharField(max_length=64, unique=True)
    address = models.CharField(max_length=320, unique=True)  # the mailbox, lower-case
    enabled = models.BooleanField(default=False)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    subject = models.CharField(max_length=150, blank=True)
    body = models.TextField(max_length=4000, blank=True)
    # For senders inside the organisation's own domains; empty means they get `body`.
    internal_body = models.TextField(max_length=4000, blank=True)
    delegate = models.CharField(max_length=200, blank=True)
    interval_days = models.PositiveSmallIntegerField(
        default=DEFAULT_INTERVAL_DAYS, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, help_text="uid of whoever changed it last")

    class Meta:
        ordering = ["uid"]

    def __str__(self) -> str:
        return f"vacation reply of {self.uid}"

    @property
    def interval(self) -> timedelta:
        return timedelta(days=max(1, self.interval_days))

    def in_window(self, now: datetime) -> bool:
        if self.starts_at is not None and now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at

    def is_active(self, now: datetime) -> bool:
        return self.enabled and self.in_window(now)

    @property
    def reply_key(self) -> str:
        """Identifies "this reply": a new absence or a new text counts as a new reply."""
        parts = (self.subject, self.body, self.internal_body, self.delegate, str(self.starts_at))
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class ReplyLog(models.Model):
    """When a sender last got a given vacation reply: the per-sender interval rule reads it.
    Written just before the reply's end of data and taken back if Postfix does not accept the
    reply (outofoffice.replies.ReplyRecord), so a responder killed mid-hand-over never replies twice."""

    vacation = models.ForeignKey(VacationReply, on_delete=models.CASCADE, related_name="replies")
    sender = models.CharField(max_length=320)  # lower-case envelope sender
    reply_key = models.CharField(max_length=32)
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["vacation", "sender", "reply_key"], name="reply_log_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.vacation.uid} -> {self.sender} at {self.sent_at:%Y-%m-%d %H:%M}"
