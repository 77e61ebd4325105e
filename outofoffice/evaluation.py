"""Loading what the rules need from the database, and deciding one copy.

The responder and the preview page both go through `evaluate`.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import OuterRef, Subquery

from aliases.models import Alias, Domain
from outofoffice.models import ReplyLog, VacationReply
from outofoffice.rules import Decision, Incoming, Recipient, decide


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    vacation: VacationReply | None
    incoming: Incoming


def _alias_addresses(uid: str) -> tuple[set[str], set[str]]:
    """(all alias addresses of the user, those that are enabled and opted in to replies)."""
    owned: set[str] = set()
    answered: set[str] = set()
    rows = Alias.objects.filter(owner__username=uid).values_list(
        "local_part", "domain__name", "enabled", "vacation_replies"
    )
    for local_part, domain, enabled, replies in rows:
        address = f"{local_part}@{domain}".lower()
        owned.add(address)
        if enabled and replies:
            answered.add(address)
    return owned, answered


def recipient_for(vacation: VacationReply, sender: str) -> Recipient:
    owned, answered = _alias_addresses(vacation.uid)
    last_sent = getattr(vacation, "last_sent_at", None)
    if not hasattr(vacation, "last_sent_at"):  # loaded without the annotation
        last = ReplyLog.objects.filter(vacation=vacation, sender=sender).order_by("-sent_at")
        last_sent, last_key = last.values_list("sent_at", "reply_key").first() or (None, None)
    else:
        last_key = vacation.last_reply_key  # type: ignore[attr-defined]
    return Recipient(
        address=vacation.address,
        enabled=vacation.enabled,
        starts_at=vacation.starts_at,
        ends_at=vacation.ends_at,
        interval=vacation.interval,
        own_addresses=frozenset({vacation.address, *owned}),
        reply_addresses=frozenset({vacation.address, *answered}),
        # A new absence or a new text is a new reply: an old entry does not hold it back.
        last_reply_at=last_sent if last_key == vacation.reply_key else None,
    )


def evaluate(mailbox: str, incoming: Incoming, now: datetime) -> Evaluation:
    # One query for the settings and this sender's latest reply (the hot path of the responder).
    latest = ReplyLog.objects.filter(vacation=OuterRef("pk"), sender=incoming.sender).order_by("-sent_at")
    vacation = (
        VacationReply.objects.filter(address=mailbox.lower())
        .annotate(
            last_sent_at=Subquery(latest.values("sent_at")[:1]),
            last_reply_key=Subquery(latest.values("reply_key")[:1]),
        )
        .first()
    )
    recipient = recipient_for(vacation, incoming.sender) if vacation is not None else None
    return Evaluation(decision=decide(incoming, recipient, now), vacation=vacation, incoming=incoming)


def is_internal_sender(sender: str) -> bool:
    """Whether the sender belongs to the organisation: its mailbox domains and their subdomains."""
    domain = sender.rsplit("@", 1)[-1].lower()
    own = {settings.MAIL_DOMAIN.lower()}
    own.update(Domain.objects.filter(is_alias_domain=False).values_list("name", flat=True))
    return any(domain == name or domain.endswith("." + name) for name in own)
