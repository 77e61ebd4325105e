"""Postfix hash: tables rendered from the database and the directory.

Every map is a deterministic, key-sorted source ("key value" per line) so that two renders
of the same data are byte-for-byte equal and a diff against the live file shows exactly
what a publication would change. For the bulk (aliases) one grouped statement hands over
each (domain, owner) group's local parts as one string per state, from an index holding
every column it reads; a fetch of groups is checked and turned into lines as a whole and
goes, sorted, to a postmap already building the table (see publication.TableFeed): a
Python object, let alone a regex call, per row would cost more than the postmap they feed.
"""

import bisect
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import Aggregate, Count, Max, Q, QuerySet, TextField, Value
from django.utils import timezone

from accounts import directory, suspension
from aliases import addresses
from aliases.models import Alias, AliasTombstone, Domain
from outofoffice import routing

if TYPE_CHECKING:
    from aliases.publication import TableFeed

# Given a map's name and whether the renderer saw a mass change, a feed to stream that map's
# lines into while they are read (or None): aliases.publication.open_feed.
FeedOpener = Callable[[str, bool], "TableFeed | None"]

logger = logging.getLogger(__name__)
User = get_user_model()

# A key or value that could alter a map line (whitespace, comment, list separators, control
# characters) is never written. Input is validated where it is typed; this is the last guard
# for data that reached the database or the directory some other way.
MAX_TOKEN = 320
SAFE_TOKEN = re.compile(rf'^[^\s#,:"\'<>\\\x00-\x1f\x7f]{{1,{MAX_TOKEN}}}\Z')

REJECT_DISABLED = "550 5.1.1 This address is disabled"
REJECT_EXPIRED = "550 5.1.1 This address has expired"
REJECT_DELETED = "550 5.1.1 This address has been deleted"


@dataclass(frozen=True)
class RenderedMaps:
    sources: dict[str, str]  # map name -> full source text
    # For a map rendered incrementally: (base text, added lines, removed lines). When the live
    # source is exactly the base, the publisher applies this delta instead of diffing texts.
    deltas: dict[str, tuple[str, set[str], set[str]]] = field(default_factory=dict)
    # Maps whose table a feed built (or is building) from exactly these lines.
    feeds: dict[str, "TableFeed"] = field(default_factory=dict)

    def lines(self, name: str) -> list[str]:
        return self.sources[name].splitlines()


# A bulk line from SQL is "key value" with exactly one space; these never belong in one. All
# are ASCII, so they are looked for in the UTF-8 bytes (a multi-byte character holds no ASCII
# byte): bytes.translate finds them in half the time of a regex search.
FORBIDDEN_IN_LINE = b"#,:\"'<>\\" + bytes(range(0x0A)) + bytes(range(0x0B, 0x20)) + b"\x7f"


def _has_forbidden(text: str) -> bool:
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw.translate(None, FORBIDDEN_IN_LINE)) != len(raw)


def _safe(token: str) -> bool:
    return bool(SAFE_TOKEN.match(token))


def _safe_line(line: str) -> bool:
    key, _, value = line.partition(" ")
    return _safe(key) and _safe(value) and not key.startswith("@")


def _local_parts_check_out(joined: str) -> bool:
    """Whether newline-joined local parts are each safe in a map key: checked over the whole
    string at once (a million regex calls would cost more than the postmap they feed).
    Non-ASCII ones are left to the per-row check."""
    return (
        joined != ""
        and joined.isascii()
        and " " not in joined
        and not _has_forbidden(joined)
        and "\n\n" not in joined
        and not joined.startswith(("\n", "@"))
        and not joined.endswith("\n")
        and "\n@" not in joined
    )


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def _source(entries: Iterable[tuple[str, str]], name: str) -> str:
    """Sorted "key value" lines; the first value wins for a repeated key (callers merge first)."""
    table: dict[str, str] = {}
    for key, value in entries:
        # No key of these maps names a whole domain ("@domain"): an alias row with an empty
        # local part must not refuse or route every address of its domain.
        if not _safe(key) or key.startswith("@") or not value or "\n" in value or "\x00" in value:
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


def directory_mailboxes() -> dict[str, str]:
    """uid -> mailbox address for every person in the directory (one paged search), as the
    maps take them. A `mail` value that is not a plain address (a slash, "..", whitespace,
    quotes, two @...) would turn into a path or a different line in a map: such an entry is
    left out, so its owner's aliases are refused as ownerless."""
    found = {}
    for entry in directory.mail_entries():
        try:
            mail = addresses.normalize_address(entry.mail)
        except ValidationError:
            logger.warning(
                "directory entry %s (uid %r): unsafe mail %r left out of the maps", entry.dn, entry.uid, entry.mail[:80]
            )
            continue
        if entry.uid:
            found[entry.uid] = mail
    return found


def mailboxes_fingerprint(mailboxes: dict[str, str]) -> str:
    """A digest of uid -> mailbox: equal digests, equal alias targets."""
    text = "".join(f"{uid} {mail}\n" for uid, mail in sorted(mailboxes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _sql(queryset: QuerySet[Any]) -> tuple[str, Any]:
    # Unordered: the model's default ordering would make the database sort every row for nothing.
    unordered = queryset.order_by()
    return unordered.query.get_compiler(using=queryset.db).as_sql()


def _rows(queryset: QuerySet[Any]) -> list[tuple[Any, ...]]:
    # Straight from the cursor: the ORM's per-row iteration costs more than the query itself.
    sql, params = _sql(queryset)
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class JoinedLines(Aggregate):
    """A group's values joined by newlines (GROUP_CONCAT in SQLite, STRING_AGG in PostgreSQL),
    in no particular order: one string per group instead of a Python object per row."""

    function = "GROUP_CONCAT"
    output_field = TextField()

    def __init__(self, expression: str, **extra: Any) -> None:
        super().__init__(expression, Value("\n"), **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return super().as_sql(compiler, connection, function="STRING_AGG", **extra_context)


# A full read fetches about this many alias rows at a time (in however many groups that
# takes): each fetch's lines can go to postmap at once, and a fetch costs the same Python
# whether its groups are large or small.
FETCH_ROWS = 4000


def _group_chunks(queryset: QuerySet[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a grouped query whose last column counts each group's alias rows, in
    fetches of about FETCH_ROWS alias rows as the database delivers them (a server-side cursor
    where the backend has one); the first fetch is one group, so postmap starts at once."""
    sql, params = _sql(queryset)
    with connections[queryset.db].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        size = 1
        while groups := cursor.fetchmany(size):
            yield groups
            rows = sum(group[-1] for group in groups)
            size = max(1, min(1000, size * FETCH_ROWS // max(rows, 1)))


# How far back an incremental render looks for changed rows: covers transactions that were
# saved before the previous render started but committed after it, and clock differences
# between the web and worker hosts.
CHANGE_MARGIN = timedelta(seconds=60)


@dataclass
class AliasBulk:
    """What the last render knew of every alias row, kept by the worker so the next render
    reads only rows changed since (a million-row render costs seconds). Each row is known by
    its address, in exactly one of lines, switched_off and unlisted: an alias never changes its
    address or owner (the app has no such edit), so a changed row's old line is found by its
    address, and a deleted row's by its tombstone."""

    database: str
    domains: dict[int, str]
    owners: dict[int, str]
    lines: list[str]  # the live aliases' "address owner" lines, sorted
    switched_off: dict[str, bool]  # the other aliases: address -> enabled (so expired, not disabled)
    unlisted: set[str]  # live aliases without a line: an owner without a mailbox, an unsafe line
    max_id: int  # the highest row id seen: rows above it are left to the next render
    rendered_at: datetime
    full_at: float  # time.monotonic() of the last full read
    extra_lines: list[str] = field(default_factory=list)
    virtual_text: str = ""

    def known_rows(self) -> int:
        return len(self.lines) + len(self.switched_off) + len(self.unlisted)

    def place(self, address: str, line: str | None, live: bool, enabled: bool) -> tuple[str | None, str | None]:
        """Put one row where it now belongs; returns (old line, new line) when its line changed."""
        old = _find_line(self.lines, address)
        self.switched_off.pop(address, None)
        self.unlisted.discard(address)
        if not live:
            self.switched_off[address] = enabled
        elif line is None:
            self.unlisted.add(address)
        if old == line:
            return None, None
        if old is not None:
            _remove_line(self.lines, old)
        if line is not None:
            bisect.insort(self.lines, line)
        return old, line

    def forget(self, address: str) -> str | None:
        """Take out a deleted row; returns its line, if it had one."""
        old = _find_line(self.lines, address)
        if old is not None:
            _remove_line(self.lines, old)
        self.switched_off.pop(address, None)
        self.unlisted.discard(address)
        return old


_bulk: AliasBulk | None = None
_bulk_lock = threading.Lock()


def _line(local: str, domain: int, owner: int, bulk: AliasBulk) -> str | None:
    email = bulk.owners.get(owner)
    name = bulk.domains.get(domain)
    if not email or not name:
        return None
    line = f"{local}@{name} {email}".lower()
    return line if _safe_line(line) else None


def _is_live(enabled: bool, expires_at: datetime | None, now: datetime) -> bool:
    return enabled and (expires_at is None or expires_at > now)


def _find_line(lines: list[str], address: str) -> str | None:
    """The line of a key in sorted lines (a space sorts below every character a key holds)."""
    at = bisect.bisect_left(lines, f"{address} ")
    return lines[at] if at < len(lines) and lines[at].startswith(f"{address} ") else None


def _remove_line(lines: list[str], line: str) -> None:
    at = bisect.bisect_left(lines, line)
    if at < len(lines) and lines[at] == line:
        del lines[at]


def _full_bulk(
    now: datetime, database: str, domains: dict[int, str], owners: dict[int, str], feed: "TableFeed | None"
) -> AliasBulk:
    """Every alias row, read afresh by one statement that hands over each (domain, owner)
    group's local parts as one string per state, from an index that holds every column it
    reads. A group's lines are its local parts with one suffix each; they are checked a fetch
    of groups at a time, and go to the feed as they come."""
    live = Q(enabled=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    groups = (
        Alias.objects.order_by()
        .values("domain_id", "owner_id")
        .annotate(
            live=JoinedLines("local_part", filter=live),
            disabled=JoinedLines("local_part", filter=Q(enabled=False)),
            expired=JoinedLines("local_part", filter=Q(enabled=True, expires_at__lte=now)),
            rows=Count("pk"),
        )
        .values_list("domain_id", "owner_id", "live", "disabled", "expired", "rows")
    )
    # Read first: a row committed during the read has a higher id, which the next render's
    # count leaves out until it has seen the row (Max per group would cost a sixth of the read).
    max_id = Alias.objects.aggregate(top=Max("pk"))["top"] or 0
    bulk = AliasBulk(database, domains, owners, [], {}, set(), max_id, now, time.monotonic())
    checks = _SuffixChecks(domains, owners)
    runs: list[list[str]] = []  # sorted runs of lines, each sent to the feed as it is made
    texts: list[str] = []  # lines not yet in a run
    pending = 0
    for chunk in _group_chunks(groups):
        if _chunk_checks_out(chunk, checks):
            text = _chunk_text(chunk, bulk)
        else:
            text = "".join(_group_text(group, bulk, checks, now) for group in chunk)
        texts.append(text)
        pending += text.count("\n")
        if feed is not None and pending >= MIN_RUN_LINES and feed.hungry():
            runs.append(_sorted_run(texts, feed))
            texts, pending = [], 0
    runs.append(_sorted_run(texts, feed))
    # Timsort finds the runs and merges them.
    bulk.lines = [line for run in runs for line in run]
    bulk.lines.sort()
    return bulk


Group = tuple[int, int, str | None, str | None, str | None, int]  # domain, owner, live, disabled, expired, rows


class _SuffixChecks:
    """Which domains and owner addresses are safe in a line: checked once a read (all owner
    addresses as one string when they are plain ASCII, each by itself otherwise)."""

    def __init__(self, domains: dict[int, str], owners: dict[int, str]) -> None:
        self.good_domains = {pk for pk, name in domains.items() if _safe(f"x@{name}")}
        emails = {pk: email for pk, email in owners.items() if email}
        joined = "\n".join(emails.values())
        if _local_parts_check_out(joined) and max(map(len, emails.values())) <= MAX_TOKEN:
            self.bad_owners: set[int] = set()
        else:
            self.bad_owners = {pk for pk, email in emails.items() if not _safe(email)}

    def name_ok(self, domain: int) -> bool:
        return domain in self.good_domains

    def email_ok(self, owner: int) -> bool:
        """Safe, or missing (such an owner's aliases get no line)."""
        return owner not in self.bad_owners


def _chunk_checks_out(chunk: list[Group], checks: _SuffixChecks) -> bool:
    """Whether a fetch of groups takes the quick way: its strings hold as many values as the
    database counted rows (so no local part holds a newline), its live local parts are each
    safe, and so is every domain and owner address it names. Checked over the whole fetch at
    once (per group, Python would cost more than the query); a fetch that fails is done group
    by group."""
    domain_ids, owner_ids, live, disabled, expired, rows = zip(*chunk, strict=True)
    strings = [text for text in live + disabled + expired if text is not None]
    values = "\n".join(strings).count("\n") + 1 if strings else 0
    if values != sum(rows):
        return False
    joined = "\n".join(text for text in live if text is not None)
    if joined and not _local_parts_check_out(joined):
        return False
    return checks.good_domains.issuperset(domain_ids) and checks.bad_owners.isdisjoint(owner_ids)


def _chunk_text(chunk: list[Group], bulk: AliasBulk) -> str:
    """The lines of a fetch of groups that checked out (and their other rows placed)."""
    domain_ids, owner_ids, live, disabled, expired, _ = zip(*chunk, strict=True)
    names, emails = bulk.domains, bulk.owners
    for column, enabled in ((disabled, False), (expired, True)):
        for domain, off in zip(domain_ids, column, strict=True):
            if off is not None:
                bulk.switched_off.update((f"{local}@{names[domain]}".lower(), enabled) for local in off.split("\n"))
    for domain, owner, joined in zip(domain_ids, owner_ids, live, strict=True):
        if joined is not None and not emails.get(owner):
            bulk.unlisted.update(f"{local}@{names[domain]}".lower() for local in joined.split("\n"))
    texts = [
        f"{joined}\n".replace("\n", f"@{names[domain]} {emails[owner]}\n")
        for domain, owner, joined in zip(domain_ids, owner_ids, live, strict=True)
        if joined is not None and emails.get(owner)
    ]
    return "".join(texts).lower()


def _group_text(group: Group, bulk: AliasBulk, checks: _SuffixChecks, now: datetime) -> str:
    """The lines of one group, of a fetch that did not check out as a whole."""
    domain, owner, joined, disabled, expired, rows = group
    quick = (
        _pieces(joined) + _pieces(disabled) + _pieces(expired) == rows
        and checks.name_ok(domain)
        and checks.email_ok(owner)
        and (joined is None or _local_parts_check_out(joined))
    )
    return _chunk_text([group], bulk) if quick else _group_by_rows(bulk, domain, owner, now)


# postmap builds a hash table faster from keys in ascending order (about 15% at 100,000
# lines). The lines go to the feed in sorted runs: a run is sent when postmap has taken
# everything sent before (it still has up to a pipe's worth, about 20 ms, to build), so runs
# grow long while postmap is the slower one (a million lines) and stay short while it waits.
MIN_RUN_LINES = 2000


def _sorted_run(texts: list[str], feed: "TableFeed | None") -> list[str]:
    text = "".join(texts)
    run = text.split("\n")[:-1] if text else []
    run.sort()
    if feed is not None and run:
        feed.send(run)
    return run


def _pieces(joined: str | None) -> int:
    """How many values a JoinedLines string holds (one more than its newlines)."""
    return joined.count("\n") + 1 if joined is not None else 0


def _group_by_rows(bulk: AliasBulk, domain: int, owner: int, now: datetime) -> str:
    """The live lines of one (domain, owner) group, read and checked row by row (each row also
    placed in the bulk's other sets); unsafe rows are left out."""
    rows = Alias.objects.filter(domain_id=domain, owner_id=owner).values_list("local_part", "enabled", "expires_at")
    name = bulk.domains.get(domain)
    kept, skipped = [], 0
    for local, enabled, expires_at in rows:  # through the ORM: expires_at comes time-zone aware
        if name is None:
            continue  # a domain made after the render read them: the next full read places it
        address = f"{local}@{name}".lower()
        if not _is_live(enabled, expires_at, now):
            bulk.switched_off[address] = enabled
        elif line := _line(local, domain, owner, bulk):
            kept.append(f"{line}\n")
        else:
            bulk.unlisted.add(address)
            skipped += bool(bulk.owners.get(owner))
    if skipped:
        logger.warning("map virtual: skipped %d unsafe entries", skipped)
    return "".join(kept)


def _update_bulk(bulk: AliasBulk, now: datetime) -> tuple[set[str], set[str]] | None:
    """Apply the rows changed since the last render; returns (added, removed) lines, or None
    when so many changed that a full read is the better way, or when the rows no longer add up
    (a row removed other than with a tombstone): the caller then discards this bulk."""
    since = bulk.rendered_at - CHANGE_MARGIN
    changed = Alias.objects.filter(
        Q(updated_at__gte=since) | Q(created_at__gte=since) | Q(expires_at__gt=since, expires_at__lte=now)
    ).order_by()  # each condition has its index; the default ordering would have the table scanned
    tombstones = AliasTombstone.objects.filter(deleted_at__gte=since).order_by()
    limit = settings.MAP_INCREMENTAL_MAX_LINES
    fields = ("id", "local_part", "domain_id", "owner_id", "enabled", "expires_at")
    rows = list(changed.values_list(*fields)[: limit + 1])
    deleted = list(tombstones.values_list("address", flat=True)[: limit + 1])
    if len(rows) + len(deleted) > limit:
        return None  # a mass change (an import): reading everything is cheaper than patching
    added: set[str] = set()
    removed: set[str] = set()
    for pk, local, domain, owner, enabled, expires_at in rows:
        name = bulk.domains.get(domain)
        if name is None:
            return None  # a domain the last read did not know: only a full read places it
        bulk.max_id = max(bulk.max_id, pk)
        live = _is_live(enabled, expires_at, now)
        line = _line(local, domain, owner, bulk) if live else None
        old, new = bulk.place(f"{local}@{name}".lower(), line, live, enabled)
        removed.update([old] if old else [])
        added.update([new] if new else [])
    # A deleted row leaves a tombstone with its address, made with the deletion (one seen by
    # the previous render is found again within the margin, and then matches nothing).
    for address in deleted:
        old = bulk.forget(address.lower())
        removed.update([old] if old else [])
    # Rows gone without a tombstone (a deleted owner's, or removed by hand) show in the count;
    # rows above max_id were committed after the rows above were read, and wait for next time.
    if _rows_up_to(bulk.max_id) != bulk.known_rows():
        return None
    bulk.rendered_at = now
    return added - removed, removed - added


def _rows_up_to(max_id: int) -> int:
    """Alias rows with an id up to max_id, counted as all rows less those above it in one
    statement: a plain count is answered from an index's size, while counting the rows up to
    max_id directly reads every one of them (40 ms at a million rows, for each change)."""
    table = connections[Alias.objects.db].ops.quote_name(Alias._meta.db_table)
    with connections[Alias.objects.db].cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM {table}) - (SELECT COUNT(*) FROM {table} WHERE id > %s)",  # noqa: S608
            [max_id],
        )
        return int(cursor.fetchone()[0])


def _alias_bulk(
    now: datetime, full: bool, opener: FeedOpener | None, feeds: "dict[str, TableFeed]", mailboxes: dict[str, str]
) -> tuple[AliasBulk, tuple[set[str], set[str]] | None, "TableFeed | None"]:
    """The alias lines, read fully or updated from the rows changed since the last render.
    Returns the delta too when the update was incremental, and the feed a full read went to
    (also put in `feeds` as soon as it is open, so that a failure discards it)."""
    global _bulk
    database = str(connections[Alias.objects.db].settings_dict["NAME"])
    bulk = _bulk
    feed = None
    surely_full = full or bulk is None
    if opener and surely_full:
        # postmap starts up while the domains and owners are read.
        feed = _opened(opener("virtual", False), feeds)
    domains = dict(_rows(Domain.objects.values_list("pk", "name")))
    # Each owner's mailbox as the directory has it now (the user rows' email is a cache that
    # only a sign-in refreshes); an owner without one gets "" and their aliases are refused.
    usernames = _rows(User.objects.values_list("pk", "username"))  # as many as users: no ORM per row
    owners = {pk: mailboxes.get(username, "") for pk, username in usernames}
    stale = (
        full
        or bulk is None
        or bulk.database != database
        or bulk.domains != domains
        or bulk.owners != owners
        or time.monotonic() - bulk.full_at > settings.MAP_FULL_RECONCILE_INTERVAL
    )
    delta = None if stale or bulk is None else _update_bulk(bulk, now)
    if bulk is not None and delta is not None:
        return bulk, delta, None
    if opener and not surely_full:
        mass_change = not stale  # the incremental update found too many changed rows
        feed = _opened(opener("virtual", mass_change), feeds)
    _bulk = _full_bulk(now, database, domains, owners, feed)
    return _bulk, None, feed


def _opened(feed: "TableFeed | None", feeds: "dict[str, TableFeed]") -> "TableFeed | None":
    if feed is not None:
        feeds["virtual"] = feed  # discarded by render_maps if anything fails from here on
    return feed


def _virtual(
    bulk: AliasBulk, extras: dict[str, list[str]], delta: tuple[set[str], set[str]] | None, feed: "TableFeed | None"
) -> tuple[str, tuple[str, set[str], set[str]] | None]:
    """The virtual source, and its delta from the previous render when that is cheap to know:
    no extra key (catch-all, mailbox, vacation) is also an alias address, so the extras merge
    into no alias line. The feed, if any, gets the extra lines and is closed; when an extra key
    merges into an alias line the fed table would differ, so it is discarded instead."""
    lines = bulk.lines
    extra_lines = sorted(f"{key} {value}" for key, value in _merged(extras) if _safe(key))
    colliding = False
    for key in extras:
        at = bisect.bisect_left(lines, f"{key} ")
        colliding = colliding or (at < len(lines) and lines[at].startswith(f"{key} "))
    if feed is not None:
        if colliding:
            feed.discard()
        else:
            feed.send(extra_lines)
            feed.close()
    if colliding:
        text, hint = _with_extras(lines, extras, "virtual"), None
    else:
        # Two sorted runs: Timsort merges them in one linear pass.
        text, hint = _text(sorted(lines + extra_lines) if extra_lines else lines), None
        if delta is not None and bulk.virtual_text:
            old_extras, new_extras = set(bulk.extra_lines), set(extra_lines)
            hint = (bulk.virtual_text, delta[0] | (new_extras - old_extras), delta[1] | (old_extras - new_extras))
    bulk.extra_lines, bulk.virtual_text = (extra_lines, text) if not colliding else ([], "")
    return text, hint


def render_maps(
    now: datetime | None = None,
    full: bool = True,
    feed: FeedOpener | None = None,
    mailboxes: dict[str, str] | None = None,
) -> RenderedMaps:
    """Every map's source, with `mailboxes` (uid -> address, from directory_mailboxes(); read
    here when not given) as the alias targets. With a feed opener, a full read of the aliases
    may also stream them into a table being built (RenderedMaps.feeds), which the caller must
    use or discard."""
    feeds: dict[str, TableFeed] = {}
    if mailboxes is None:
        mailboxes = directory_mailboxes()
    try:
        return _render(now or timezone.now(), full, feed, feeds, mailboxes)
    except BaseException:
        for table in feeds.values():
            table.discard()
        raise


def _render(
    now: datetime, full: bool, opener: FeedOpener | None, feeds: "dict[str, TableFeed]", mail_by_uid: dict[str, str]
) -> RenderedMaps:
    # The worker keeps the alias lines between renders, under a lock: a threaded worker may
    # render for two tasks at once.
    with _bulk_lock:
        # The bulk first: a full read feeds postmap, which then builds while the rest is read.
        bulk, delta, fed = _alias_bulk(now, full, opener, feeds, mail_by_uid)
        return _render_around(bulk, delta, fed, feeds, mail_by_uid)


def _render_around(
    bulk: AliasBulk,
    delta: tuple[set[str], set[str]] | None,
    fed: "TableFeed | None",
    feeds: "dict[str, TableFeed]",
    mail_by_uid: dict[str, str],
) -> RenderedMaps:
    """Every map but the aliases' lines, which the bulk holds."""
    mailboxes = list(mail_by_uid.values())
    domains = list(
        Domain.objects.values_list("name", "is_alias_domain", "catchall_destinations", "catchall_owner__username")
    )
    alias_domain_names = {name for name, is_alias, _, _ in domains if is_alias}

    extras: dict[str, list[str]] = {}
    catchall_domains: set[str] = set()
    for name, _, destinations, owner_uid in domains:
        targets = [d.strip().lower() for d in destinations.replace("\n", ",").split(",") if d.strip()]
        if owner_uid and mail_by_uid.get(owner_uid):
            targets.append(mail_by_uid[owner_uid])
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

    virtual, virtual_delta = _virtual(bulk, extras, delta, fed)

    # Checked before delivery (check_recipient_access), so a refused address never falls
    # through to a catch-all. One reply per address: deleted wins over disabled over expired.
    refused: dict[str, str] = {}
    for (address,) in _rows(AliasTombstone.objects.values_list("address")):
        refused[address.lower()] = REJECT_DELETED
    # The switched-off aliases come with the others (a million-row table is not scanned again).
    for address, enabled in bulk.switched_off.items():
        refused.setdefault(address, REJECT_EXPIRED if enabled else REJECT_DISABLED)
    # A live alias without a line: its owner has no mailbox (entry deleted, mail removed or
    # unsafe). Refused at RCPT with the disabled text, so that the reply names no other address,
    # it never reaches a catch-all, and no accepted mail bounces for want of a target.
    for address in bulk.unlisted:
        refused.setdefault(address, REJECT_DISABLED)

    mailbox_domains = {name for name, is_alias, _, _ in domains if not is_alias}
    mailbox_domains.update(m.rpartition("@")[2] for m in mailboxes)
    mailbox_domains -= alias_domain_names  # a domain listed as both is refused by Postfix

    mailbox_paths = []
    for mailbox in mailboxes:
        local, _, domain = mailbox.rpartition("@")
        if domain in mailbox_domains:
            mailbox_paths.append((mailbox, f"{domain}/{local}/"))

    sources = {
        "virtual": virtual,
        "recipient_access": _source(refused.items(), "recipient_access"),
        "transport": _source(routing.vacation_transport_entries(), "transport"),
        "sender_access": _source(suspension.sender_access_entries(mail_by_uid), "sender_access"),
        "mailbox_domains": _source(((name, "OK") for name in mailbox_domains), "mailbox_domains"),
        "alias_domains": _source(((name, "OK") for name in alias_domain_names), "alias_domains"),
        "mailboxes": _source(mailbox_paths, "mailboxes"),
    }
    unknown = set(sources) - set(settings.POSTFIX_MAPS)
    if unknown:
        raise ValueError(f"rendered maps missing from POSTFIX_MAPS: {sorted(unknown)}")
    deltas = {"virtual": virtual_delta} if virtual_delta else {}
    built = {name: table for name, table in feeds.items() if not table.discarded}
    return RenderedMaps({name: sources.get(name, "") for name in settings.POSTFIX_MAPS}, deltas, built)
