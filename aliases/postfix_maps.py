"""Postfix hash: tables rendered from the database and the directory.

Every map is a deterministic, key-sorted source ("key value" per line) so that two renders
of the same data are byte-for-byte equal and a diff against the live file shows exactly
what a publication would change. For the bulk (aliases) SQL builds and sorts the lines:
per-row Python work on a million aliases would cost more than the postmap they feed.
"""

import bisect
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Concat, Lower
from django.utils import timezone

from accounts import directory, suspension
from aliases.models import Alias, AliasTombstone, Domain
from outofoffice import routing

logger = logging.getLogger(__name__)
User = get_user_model()

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


# A bulk line from SQL is "key value" with exactly one space; these never belong in one.
FORBIDDEN_IN_LINE = re.compile(r'[#,:"\'<>\\\x00-\x09\x0b-\x1f\x7f]')


def _safe(token: str) -> bool:
    return bool(SAFE_TOKEN.match(token))


def _safe_line(line: str) -> bool:
    key, _, value = line.partition(" ")
    return _safe(key) and _safe(value) and not key.startswith("@")


def _checked(lines: list[str], name: str) -> list[str]:
    """Lines built by SQL, checked in one pass over the whole text (per line only if that fails:
    a million regex calls would cost more than the postmap they feed)."""
    text = "\n".join(lines)
    one_per_line = text.count(" ") == len(lines) and text.count("\n") == max(len(lines) - 1, 0)
    if one_per_line and not FORBIDDEN_IN_LINE.search(text) and "\n@" not in f"\n{text}":
        return lines
    kept = [line for line in lines if _safe_line(line)]
    logger.warning("map %s: skipped %d unsafe entries", name, len(lines) - len(kept))
    return kept


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def _source(entries: Iterable[tuple[str, str]], name: str) -> str:
    """Sorted "key value" lines; the first value wins for a repeated key (callers merge first)."""
    table: dict[str, str] = {}
    for key, value in entries:
        if not _safe(key) or not value or "\n" in value or "\x00" in value:
            logger.warning("map %s: skipped unsafe entry %r", name, key[:80])
            continue
        table.setdefault(key, value)
    return _text([f"{key} {table[key]}" for key in sorted(table)])


def _merged(targets: dict[str, list[str]]) -> Iterable[tuple[str, str]]:
    for key, values in targets.items():
        safe = [value for value in dict.fromkeys(values) if _safe(value)]
        if safe:
            yield key, ", ".join(safe)


def _with_extras(bulk: list[str], extras: dict[str, list[str]], name: str) -> str:
    """Sorted bulk lines plus a few extra keys; an extra key that is also a bulk key keeps the
    bulk targets first and adds its own (targets are merged per key)."""
    bulk = list(bulk)
    for key in list(extras):
        at = bisect.bisect_left(bulk, f"{key} ")
        if at < len(bulk) and bulk[at].startswith(f"{key} "):
            extras[key] = [*bulk.pop(at).split(" ", 1)[1].split(", "), *extras[key]]
    extra_lines = [f"{key} {value}" for key, value in _merged(extras) if _safe(key)]
    # Two sorted runs: Timsort merges them in one linear pass. A space sorts below every
    # character a key may hold, so sorting lines sorts keys.
    return _text(sorted(bulk + sorted(extra_lines)))


def _mailboxes() -> list[str]:
    """Real mailboxes from the directory, lower-case; malformed addresses are left out."""
    found = []
    for user in directory.iter_users():
        local, at, domain = user.mail.partition("@")
        if at and local and domain and _safe(user.mail):
            found.append(user.mail)
    return found


def _address() -> Concat:
    return Concat(Lower("local_part"), Value("@"), Lower("domain__name"))


def _rows(queryset: QuerySet[Any]) -> list[tuple[Any, ...]]:
    # Straight from the cursor: the ORM's per-row iteration costs more than the query itself.
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _lines(queryset: QuerySet[Any], line: Concat) -> list[str]:
    # Straight from the cursor: the ORM's per-row iteration costs more than the query itself.
    query = queryset.annotate(line=line).order_by("line").values_list("line").query
    sql, params = query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def render_maps(now: datetime | None = None) -> RenderedMaps:
    now = now or timezone.now()
    mailboxes = _mailboxes()
    domains = list(
        Domain.objects.values_list("name", "is_alias_domain", "catchall_destinations", "catchall_owner__email")
    )
    alias_domain_names = {name for name, is_alias, _, _ in domains if is_alias}

    # The bulk of the work: plain rows, no join; the lines are built and sorted here.
    domain_names = dict(Domain.objects.values_list("pk", "name"))
    active = Alias.objects.filter(enabled=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    rows = _rows(active.values_list("local_part", "domain_id", "owner_id"))
    owners = dict(User.objects.filter(pk__in={owner for _, _, owner in rows}).values_list("pk", "email"))
    alias_lines = [
        f"{local}@{domain_names[domain]} {owners[owner]}".lower() for local, domain, owner in rows if owners[owner]
    ]
    alias_lines.sort()
    alias_lines = _checked(alias_lines, "virtual")

    extras: dict[str, list[str]] = {}
    catchall_domains: set[str] = set()
    for name, _, destinations, owner_email in domains:
        targets = [d.strip().lower() for d in destinations.replace("\n", ",").split(",") if d.strip()]
        if owner_email:
            targets.append(owner_email.lower())
        if targets:
            extras.setdefault(f"@{name}", []).extend(targets)
            catchall_domains.add(name)
    # virtual_alias_maps tries user@domain before @domain: a real mailbox in a catch-all
    # domain maps to itself so the catch-all never swallows it.
    for mailbox in mailboxes:
        if mailbox.rpartition("@")[2] in catchall_domains:
            extras.setdefault(mailbox, []).append(mailbox)
    # Vacation copies: the mailbox itself stays a target, the responder gets a copy.
    for mailbox, extra in routing.vacation_virtual_entries():
        mailbox = mailbox.lower()
        extras.setdefault(mailbox, [mailbox]).append(extra)
        if mailbox not in extras[mailbox]:
            extras[mailbox].insert(0, mailbox)

    # Checked before delivery (check_recipient_access), so a refused address never falls
    # through to a catch-all. One reply per address: deleted wins over disabled over expired.
    deleted = _lines(AliasTombstone.objects.all(), Concat(Lower("address"), Value(f" {REJECT_DELETED}")))
    disabled = _lines(Alias.objects.filter(enabled=False), Concat(_address(), Value(f" {REJECT_DISABLED}")))
    expired = Alias.objects.filter(enabled=True, expires_at__lte=now)
    refused: dict[str, str] = {}
    for line in [*deleted, *disabled, *_lines(expired, Concat(_address(), Value(f" {REJECT_EXPIRED}")))]:
        key, _, reply = line.partition(" ")
        refused.setdefault(key, reply)

    mailbox_domains = {name for name, is_alias, _, _ in domains if not is_alias}
    mailbox_domains.update(m.rpartition("@")[2] for m in mailboxes)
    mailbox_domains -= alias_domain_names  # a domain listed as both is refused by Postfix

    mailbox_paths = []
    for mailbox in mailboxes:
        local, _, domain = mailbox.rpartition("@")
        if domain in mailbox_domains:
            mailbox_paths.append((mailbox, f"{domain}/{local}/"))

    sources = {
        "virtual": _with_extras(alias_lines, extras, "virtual"),
        "recipient_access": _source(refused.items(), "recipient_access"),
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
