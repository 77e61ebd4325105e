from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models


class HandoverNote(models.Model):
    """What someone leaves behind before an absence: who covers what, and the work in flight.

    One note per author; readable by the author, the delegates named in it and admins
    (see handover.access)."""

    author = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="handover_note")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    # The zone the author entered the window in; the window is shown in it.
    time_zone = models.CharField(max_length=64, default="UTC")
    reachability = models.CharField(max_length=300, blank=True)
    # Delegates are directory users; uid is what access checks match, name/mail are for display.
    primary_delegate_uid = models.CharField(max_length=64, db_index=True)
    primary_delegate_name = models.CharField(max_length=200, blank=True)
    primary_delegate_mail = models.CharField(max_length=320, blank=True)
    pending_decisions = models.TextField(blank=True)
    contacts = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at", "id"]

    def __str__(self) -> str:
        return f"handover note of {self.author.get_username()}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def local_starts_at(self) -> datetime:
        return self.starts_at.astimezone(self.zone)

    @property
    def local_ends_at(self) -> datetime:
        return self.ends_at.astimezone(self.zone)

    def delegate_uids(self) -> set[str]:
        return {self.primary_delegate_uid} | {t.delegate_uid for t in self.topic_delegates.all()}

    def ordered_items(self) -> list["WorkItem"]:
        """Urgent first; within each, the nearest deadline first, undated last."""
        return sorted(self.items.all(), key=WorkItem.sort_key)


class TopicDelegate(models.Model):
    note = models.ForeignKey(HandoverNote, on_delete=models.CASCADE, related_name="topic_delegates")
    topic = models.CharField(max_length=100)
    delegate_uid = models.CharField(max_length=64, db_index=True)
    delegate_name = models.CharField(max_length=200, blank=True)
    delegate_mail = models.CharField(max_length=320, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.topic}: {self.delegate_uid}"


class WorkItem(models.Model):
    class Priority(models.TextChoices):
        URGENT = "urgent", "Urgent"
        CAN_WAIT = "can-wait", "Can wait"

    note = models.ForeignKey(HandoverNote, on_delete=models.CASCADE, related_name="items")
    title = models.CharField(max_length=200)
    links = models.TextField(blank=True, help_text="http(s) URLs, one per line (validated at input)")
    context = models.TextField(blank=True, help_text="context and key decisions")
    status = models.CharField(max_length=200, blank=True)
    next_step = models.CharField(max_length=300, blank=True)
    next_step_owner = models.CharField(max_length=200, blank=True)
    deadline = models.DateField(null=True, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.CAN_WAIT)
    blockers = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title

    @property
    def is_urgent(self) -> bool:
        return self.priority == self.Priority.URGENT

    def link_list(self) -> list[str]:
        return [line for line in self.links.splitlines() if line]

    def sort_key(self) -> tuple[int, date, int]:
        return (0 if self.is_urgent else 1, self.deadline or date.max, self.pk or 0)
