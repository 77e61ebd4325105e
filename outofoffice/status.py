"""What a vacation reply is doing now, in words, for every page and message that shows it.

The state comes from the responder's own rule (rules.window_state), so a page never says "on"
while the responder stays silent, or the other way round.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from mailadmin.dates import format_datetime
from outofoffice.models import VacationReply
from outofoffice.rules import window_state

# "Away soon": replies that start within this time.
AWAY_SOON = timedelta(days=14)
BADGES = {"off": "badge-off", "scheduled": "", "on": "badge-ok", "ended": "badge-off"}


@dataclass(frozen=True)
class VacationStatus:
    state: str  # off | scheduled | on | ended
    starts_at: datetime | None
    ends_at: datetime | None

    @property
    def badge_class(self) -> str:
        return BADGES[self.state]

    @property
    def replying(self) -> bool:
        return self.state == "on"

    @property
    def sentence(self) -> str:
        """ "scheduled from 14 Dec 2026, 09:00 until 2 Jan 2027, 09:00", "on until …", "ended …"."""
        until = f" until {format_datetime(self.ends_at)}" if self.ends_at else ""
        if self.state == "scheduled" and self.starts_at is not None:
            return f"scheduled from {format_datetime(self.starts_at)}{until}"
        if self.state == "on":
            return f"on{until}" if until else "on, with no end date"
        if self.state == "ended" and self.ends_at is not None:
            return f"ended {format_datetime(self.ends_at)}"
        return "off"


def vacation_status(vacation: VacationReply | None, now: datetime | None = None) -> VacationStatus:
    if vacation is None:
        return VacationStatus("off", None, None)
    state = window_state(vacation.enabled, vacation.starts_at, vacation.ends_at, now or timezone.now())
    return VacationStatus(state, vacation.starts_at, vacation.ends_at)


def away_now(now: datetime) -> QuerySet[VacationReply]:
    """Replies the responder sends now (state "on"), ending soonest first, open-ended last."""
    started = Q(starts_at__isnull=True) | Q(starts_at__lte=now)
    not_ended = Q(ends_at__isnull=True) | Q(ends_at__gt=now)
    return VacationReply.objects.filter(started & not_ended, enabled=True).order_by(
        F("ends_at").asc(nulls_last=True), "uid"
    )


def away_soon(now: datetime) -> QuerySet[VacationReply]:
    """Replies "scheduled" to start within AWAY_SOON, soonest first."""
    return VacationReply.objects.filter(enabled=True, starts_at__gt=now, starts_at__lte=now + AWAY_SOON).order_by(
        "starts_at", "uid"
    )
