"""What out of office puts in the Postfix tables (the postfix app calls this): a copy of the
mail of each user on vacation, and the two transport hops that carry it to the responder
(outofoffice/routing.py, outofoffice/handoff.py)."""

from collections.abc import Iterator
from datetime import datetime

from outofoffice import routing
from outofoffice.models import VacationReply
from postfix.features import Entry, Snapshot


class VacationCopies:
    def entries(self, snapshot: Snapshot) -> Iterator[Entry]:
        for mailbox, copy in routing.vacation_virtual_entries(snapshot.now):
            # The mailbox itself stays a target: the responder only gets a copy.
            yield Entry("virtual", mailbox.lower(), f"{mailbox.lower()}, {copy}")
        for domain, transport in routing.vacation_transport_entries():
            yield Entry("transport", domain, transport)

    def due_keys(self, since: datetime, now: datetime) -> set[str]:
        ended = VacationReply.objects.filter(enabled=True, ends_at__gt=since, ends_at__lte=now)
        return set(ended.values_list("address", flat=True))

    def next_due(self, now: datetime) -> datetime | None:
        upcoming = VacationReply.objects.filter(enabled=True, ends_at__gt=now).order_by("ends_at")
        return upcoming.values_list("ends_at", flat=True).first()


feature = VacationCopies()
