"""Postfix hash: tables rendered from the database and the directory.

Every map is a deterministic, key-sorted source ("key value" per line) so that two renders
of the same data are byte-for-byte equal and a diff against the live file shows exactly
what a publication would change. Rendering reads rows as tuples (values_list + iterator):
building a million model instances would dominate the publication time.
"""

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts import directory, suspension
from aliases.models import Alias, AliasTombstone, Domain
from outofoffice import routing

logger = logging.getLogger(__name__)

# A key or value that could alter a map line (whitespace, comment, list separators, control
# characters) is never written. Input is validated where it is typed; this is the last guard
# for data that reached the database or the directory some other way.
SAFE_TOKEN = re.compile(r'^[^\s#,:"\'<>\\\x00-\x1f\x7f]{1,320}$')

REJECT_DISABLED = "550 5.1.1 This address is disabled"
REJECT_EXPIRED = "550 5.1.1 This address has expired"
REJECT_DELETED = "550 5.1.1 This address has been deleted"


@dataclass(frozen=True)
class RenderedMaps:
    sources: dict[str, str]  # map name -> full source text

    def lines(self, name: str) -> list[str]:
        return self.sources[name].splitlines()


def _safe(token: str) -> bool:
    return bool(SAFE_TOKEN.match(token))


def _source(entries: Iterable[tuple[str, str]], name: str) -> str:
    """Sorted "key value" lines; the first value wins for a repeated key (callers merge first)."""
    table: dict[str, str] = {}
    for key, value in entries:
        if not _safe(key) or not value or "\n" in value or "\x00" in value:
            logger.warning("map %s: skipped unsafe entry %r", name, key[:80])
            continue
        table.setdefault(key, value)
    if not table:
        return ""
    return "".join(f"{key} {table[key]}\n" for key in sorted(table))


def _merged(targets: dict[str, list[str]]) -> Iterable[tuple[str, str]]:
    for key, values in targets.items():
        safe = [value for value in dict.fromkeys(values) if _safe(value)]
        if safe:
            yield key, ", ".join(safe)


def _mailboxes() -> list[str]:
    """Real mailboxes from the directory, lower-case; malformed addresses are left out."""
    found = []
    for user in directory.iter_users():
        local, at, domain = user.mail.partition("@")
        if at and local and domain and _safe(user.mail):
            found.append(user.mail)
    return found


def render_maps(now: datetime | None = None) -> RenderedMaps:
    now = now or timezone.now()
    mailboxes = _mailboxes()
    domains = list(
        Domain.objects.values_list("name", "is_alias_domain", "catchall_destinations", "catchall_owner__email")
    )
    alias_domain_names = {name for name, is_alias, _, _ in domains if is_alias}

    virtual: dict[str, list[str]] = {}
    active = (
        Alias.objects.filter(enabled=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values_list("local_part", "domain__name", "owner__email")
    )
    for local, domain, owner_email in active.iterator(chunk_size=20000):
        if owner_email:
            virtual[f"{local.lower()}@{domain}"] = [owner_email.lower()]

    catchall_domains: set[str] = set()
    for name, _, destinations, owner_email in domains:
        targets = [d.strip().lower() for d in destinations.replace("\n", ",").split(",") if d.strip()]
        if owner_email:
            targets.append(owner_email.lower())
        if targets:
            virtual.setdefault(f"@{name}", []).extend(targets)
            catchall_domains.add(name)
    # virtual_alias_maps tries user@domain before @domain: a real mailbox in a catch-all
    # domain maps to itself so the catch-all never swallows it.
    for mailbox in mailboxes:
        if mailbox.rpartition("@")[2] in catchall_domains:
            virtual.setdefault(mailbox, []).append(mailbox)
    # Vacation copies: the mailbox itself stays a target, the responder gets a copy.
    for mailbox, extra in routing.vacation_virtual_entries():
        mailbox = mailbox.lower()
        virtual.setdefault(mailbox, [mailbox]).append(extra)
        if mailbox not in virtual[mailbox]:
            virtual[mailbox].insert(0, mailbox)

    # Checked before delivery (check_recipient_access), so a refused address never falls
    # through to a catch-all.
    refused: list[tuple[str, str]] = []
    tombstones = AliasTombstone.objects.values_list("address", flat=True)
    refused.extend((address.lower(), REJECT_DELETED) for address in tombstones.iterator(chunk_size=20000))
    inactive = Alias.objects.filter(Q(enabled=False) | Q(expires_at__lte=now)).values_list(
        "local_part", "domain__name", "enabled"
    )
    for local, domain, enabled in inactive.iterator(chunk_size=20000):
        refused.append((f"{local.lower()}@{domain}", REJECT_DISABLED if not enabled else REJECT_EXPIRED))

    mailbox_domains = {name for name, is_alias, _, _ in domains if not is_alias}
    mailbox_domains.update(m.rpartition("@")[2] for m in mailboxes)
    mailbox_domains -= alias_domain_names  # a domain listed as both is refused by Postfix

    mailbox_paths = []
    for mailbox in mailboxes:
        local, _, domain = mailbox.rpartition("@")
        if domain in mailbox_domains:
            mailbox_paths.append((mailbox, f"{domain}/{local}/"))

    sources = {
        "virtual": _source(_merged(virtual), "virtual"),
        "recipient_access": _source(refused, "recipient_access"),
        "transport": _source(routing.vacation_transport_entries(), "transport"),
        "sender_access": _source(suspension.sender_access_entries(), "sender_access"),
        "mailbox_domains": _source(((name, "OK") for name in mailbox_domains), "mailbox_domains"),
        "alias_domains": _source(((name, "OK") for name in alias_domain_names), "alias_domains"),
        "mailboxes": _source(mailbox_paths, "mailboxes"),
    }
    unknown = set(sources) - set(settings.POSTFIX_MAPS)
    if unknown:
        raise ValueError(f"rendered maps missing from POSTFIX_MAPS: {sorted(unknown)}")
    return RenderedMaps({name: sources.get(name, "") for name in settings.POSTFIX_MAPS})
