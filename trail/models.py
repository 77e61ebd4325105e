from django.db import models

from trail import parser


class Delivery(models.Model):
    """One outcome for one recipient of one message, as Postfix logged it (never a subject or
    a body: only envelope facts and Postfix's status text)."""

    class Status(models.TextChoices):
        SENT = parser.SENT, "delivered"
        DEFERRED = parser.DEFERRED, "deferred"
        BOUNCED = parser.BOUNCED, "bounced"
        EXPIRED = parser.EXPIRED, "expired"
        REJECTED = parser.REJECTED, "refused at SMTP"

    logged_at = models.DateTimeField()
    host = models.CharField(max_length=253)  # the mail host whose log this came from
    queue_id = models.CharField(max_length=32, blank=True)
    client = models.CharField(max_length=320, blank=True)
    sender = models.CharField(max_length=320, blank=True)
    recipient = models.CharField(max_length=320, blank=True)
    original_recipient = models.CharField(max_length=320, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    relay = models.CharField(max_length=320, blank=True)
    dsn = models.CharField(max_length=16, blank=True)
    delay = models.FloatField(null=True, blank=True)
    reply = models.TextField(blank=True)

    class Meta:
        ordering = ["-logged_at", "-id"]
        indexes = [
            models.Index(fields=["logged_at"]),
            models.Index(fields=["sender", "logged_at"]),
            models.Index(fields=["recipient", "logged_at"]),
            models.Index(fields=["original_recipient", "logged_at"]),
            models.Index(fields=["queue_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id or 'NOQUEUE'} {self.recipient} {self.status}"


class LogPosition(models.Model):
    """How far a mail host's follower has read its log; saved in the same transaction as the
    records of the lines read, so a restart neither repeats nor skips a line."""

    host = models.CharField(max_length=253, unique=True)
    path = models.CharField(max_length=4096)
    device = models.BigIntegerField()
    inode = models.BigIntegerField()
    offset = models.BigIntegerField()
    fingerprint = models.CharField(max_length=64)
    fingerprint_length = models.IntegerField()
    # Messages still in the queue: their client, sender and deferred recipients (trail.parser).
    parser_state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.host}: {self.path} at {self.offset}"
