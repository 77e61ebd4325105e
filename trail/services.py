"""The delivery trail: following this host's Postfix log into records, who may see which, retention."""

import logging
import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, InterfaceError, connection, reset_queries, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import directory
from aliases.models import Alias, AliasTombstone, Domain
from trail.logfile import LogReader, Position
from trail.models import Delivery, LogPosition
from trail.parser import Parser, Record

logger = logging.getLogger(__name__)

RETENTION_BATCH = 5000


def log_zone() -> tzinfo:
    """The zone of the timestamps in the log: Postfix and syslog write the host's local time."""
    if settings.MAILLOG_TIME_ZONE:
        return ZoneInfo(settings.MAILLOG_TIME_ZONE)
    try:
        with open("/etc/localtime", "rb") as local:
            return ZoneInfo.from_file(local)
    except (OSError, ValueError):
        return UTC


def _saved_position(host: str, path: Path) -> tuple[Position | None, dict[str, object]]:
    row = LogPosition.objects.filter(host=host).first()
    if row is None:
        return None, {}
    if row.path != str(path):
        logger.warning(
            "maillog: the log file changed from %s to %s; reading the new one from its start", row.path, path
        )
        return None, {}
    position = Position(row.device, row.inode, row.offset, row.fingerprint, row.fingerprint_length)
    return position, row.parser_state


# Inserted with one executemany: building the statement through the ORM costs five times
# the insert itself (scripts/bench trail, catching up a log).
_COLUMNS = (
    "logged_at",
    "host",
    "queue_id",
    "client",
    "sender",
    "recipient",
    "original_recipient",
    "status",
    "relay",
    "dsn",
    "delay",
    "reply",
)


def _insert(host: str, records: list[Record]) -> None:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in _COLUMNS)  # each field's column is its name
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (
            adapt(r.logged_at),
            host,
            r.queue_id,
            r.client,
            r.sender,
            r.recipient,
            r.original_recipient,
            r.status,
            r.relay,
            r.dsn,
            r.delay,
            r.reply,
        )
        for r in records
    ]
    with connection.cursor() as cursor:
        # Names from the model's own metadata; every value is a parameter.
        insert = f"INSERT INTO {quote(Delivery._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
        cursor.executemany(insert, rows)


def _save(host: str, path: Path, records: list[Record], position: Position, state: dict[str, object]) -> None:
    """The records and the position after them: both or neither."""
    with transaction.atomic():
        if records:
            _insert(host, records)
        LogPosition.objects.update_or_create(
            host=host,
            defaults={
                "path": str(path),
                "device": position.device,
                "inode": position.inode,
                "offset": position.offset,
                "fingerprint": position.fingerprint,
                "fingerprint_length": position.fingerprint_length,
                "parser_state": state,
            },
        )


class Follower:
    """Reads the log from where this host stopped, stores what each chunk of lines completes."""

    def __init__(self, path: Path | None = None, host: str | None = None, grace: float | None = None) -> None:
        self.path = Path(path or settings.MAILLOG_FILE)
        self.host = host or settings.MAIL_HOST
        position, state = _saved_position(self.host, self.path)
        grace = settings.MAILLOG_ROTATION_GRACE if grace is None else grace
        self.reader = LogReader(self.path, position, grace=grace)
        self.parser = Parser(zone=log_zone(), state=state)
        self.lines = 0
        self.records = 0

    def step(self) -> bool:
        """One chunk of lines (about a megabyte at most) read and stored; False when none was there."""
        lines = self.reader.read_lines()
        position = self.reader.position
        if not lines or position is None:
            return False
        records = self.parser.parse(lines, now=timezone.now())
        _save(self.host, self.path, records, position, self.parser.state())
        # No request ever ends here: with DEBUG on, Django would keep the SQL of the last
        # 9,000 queries (hundreds of megabytes of inserts) for ever.
        reset_queries()
        self.lines += len(lines)
        self.records += len(records)
        return True

    def catch_up(self) -> None:
        while self.step():
            pass

    def close(self) -> None:
        self.reader.close()


def follow(stop: Callable[[], bool], poll_seconds: float) -> None:
    """Long-running: follow the log until `stop()`. When the database or the file system fails,
    start again from what was saved (the records of a failed chunk were not stored either)."""
    while not stop():
        follower = None
        try:
            follower = Follower()
            while not stop():
                if not follower.step():
                    time.sleep(poll_seconds)
        except (DatabaseError, InterfaceError, OSError) as exc:
            logger.error("maillog: following stopped (%s); resuming from the saved position", exc)
            connection.close()  # the next query opens a fresh connection
            time.sleep(max(poll_seconds, 1.0))
        finally:
            if follower is not None:
                follower.close()


def delete_expired(now: datetime | None = None) -> int:
    """Records older than TRAIL_RETENTION_DAYS go, in small batches (no long lock)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.TRAIL_RETENTION_DAYS)
    deleted = 0
    while True:
        batch = list(Delivery.objects.filter(logged_at__lt=cutoff).values_list("pk", flat=True)[:RETENTION_BATCH])
        if not batch:
            return deleted
        deleted += Delivery.objects.filter(pk__in=batch).delete()[0]


# --- who sees what ---------------------------------------------------------------------------


def own_addresses(user: User) -> tuple[set[str], set[str]]:
    """The addresses whose mail this person may see: their mailbox as the directory has it now
    and their aliases (also switched-off, expired and deleted ones), and the domains whose
    catch-all delivers to them. Raises directory.DirectoryUnavailable."""
    entry = directory.get_user(user.get_username())
    addresses = {entry.mail} if entry is not None and entry.mail else set()
    for local_part, domain in Alias.objects.filter(owner=user).values_list("local_part", "domain__name"):
        addresses.add(f"{local_part}@{domain}".lower())
    addresses.update(AliasTombstone.objects.filter(former_owner=user).values_list("address", flat=True))
    domains = set(Domain.objects.filter(catchall_owner=user).values_list("name", flat=True))
    return addresses, domains


def involving(addresses: Collection[str], domains: Iterable[str] = ()) -> Q:
    """Records of mail from or to any of these addresses (or to any address of these domains)."""
    found = Q(pk__in=[])
    if addresses:
        found = Q(sender__in=addresses) | Q(recipient__in=addresses) | Q(original_recipient__in=addresses)
    for domain in domains:
        found |= Q(recipient__endswith=f"@{domain}") | Q(original_recipient__endswith=f"@{domain}")
    return found


def visible_to(user: User, is_staff: bool) -> QuerySet[Delivery]:
    if is_staff:
        return Delivery.objects.all()
    return Delivery.objects.filter(involving(*own_addresses(user)))
