from django.db import models
from django.utils import timezone


class Notice(models.Model):
    """A plain mail the app tells a person something with (their suspension, an automatic
    suspension to the admins). Kept until Postfix took it, so it survives Postfix or the worker
    being down; `skipped` marks one the per-recipient rate limit held back."""

    to_address = models.CharField(max_length=320, db_index=True)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    kind = models.CharField(max_length=40)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    skipped = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} notice to {self.to_address}"
