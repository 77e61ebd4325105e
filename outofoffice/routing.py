"""What the map publication needs from out-of-office: copies of mail for users on vacation.

Postfix keeps delivering to the mailbox (the renderer keeps the mailbox itself as a target)
and adds a copy to <local>=<domain>@handoff.VACATION_ROUTING_DOMAIN; the transport map and
the hand-off smtpd (outofoffice/handoff.py) turn it into a copy to the routing address
<local>=<domain>@VACATION_ROUTING_DOMAIN that never notifies the sender, which the transport
map sends to the responder. "=" rather than "#": the map renderer refuses "#" in any token
(a comment character in map sources), and a domain never contains "=", so the last "="
splits it.
outofoffice/postfix_feature.py hands these entries to the postfix app.
"""

from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from outofoffice import handoff
from outofoffice.models import VacationReply


def routing_address(mailbox: str) -> str:
    """The address the responder is given a copy for (the second hop)."""
    return _encoded(mailbox, settings.VACATION_ROUTING_DOMAIN)


def handoff_address(mailbox: str) -> str:
    """The virtual target of the copy (the first hop, to the hand-off smtpd)."""
    return _encoded(mailbox, handoff.handoff_domain(settings.VACATION_ROUTING_DOMAIN))


def _encoded(mailbox: str, domain: str) -> str:
    local_part, mailbox_domain = mailbox.lower().rsplit("@", 1)
    return f"{local_part}={mailbox_domain}@{domain}"


def mailbox_for(routing: str) -> str | None:
    """The mailbox a routing address stands for, or None if it is not one of ours."""
    local, _, domain = routing.strip().strip("<>").lower().rpartition("@")
    if domain != settings.VACATION_ROUTING_DOMAIN.lower() or "=" not in local:
        return None
    mailbox_local, _, mailbox_domain = local.rpartition("=")
    if not mailbox_local or not mailbox_domain:
        return None
    return f"{mailbox_local}@{mailbox_domain}"


def vacation_virtual_entries(now: datetime | None = None) -> list[tuple[str, str]]:
    """(mailbox address, extra virtual target) pairs for vacations switched on and not yet ended.

    Vacations that start later are included: the responder checks the window itself, so the
    first reply goes out exactly at the start and the last one before the end."""
    now = now or timezone.now()
    active = VacationReply.objects.filter(enabled=True).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
    return [(address, handoff_address(address)) for address in active.values_list("address", flat=True)]


def vacation_transport_entries() -> list[tuple[str, str]]:
    """(domain, transport) pairs: the hand-off domain to the hand-off smtpd, the routing domain
    to the responder (LMTP)."""
    responder = f"lmtp:inet:{settings.RESPONDER_HOST}:{settings.RESPONDER_PORT}"
    return handoff.transport_entries(settings.VACATION_ROUTING_DOMAIN, settings.VACATION_HANDOFF_PORT, responder)
