"""Writing a batch of counts: increments, so several mail hosts sharing the database add up."""

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Greatest

from activity.models import AliasDailyCount, AliasSenderDomain, AliasTotal, LeakFlag, SenderBlock
from aliases.models import Alias
from policy.tally import Batch


def _existing_aliases(batch: Batch) -> set[int]:
    wanted = sorted({key[0] for key in (*batch.daily, *batch.senders, *batch.leaks)})
    found: set[int] = set()
    for i in range(0, len(wanted), 500):
        found.update(Alias.objects.filter(pk__in=wanted[i : i + 500]).values_list("pk", flat=True))
    return found


# Written out in full (no names filled in): INSERT … ON CONFLICT works alike in SQLite and
# PostgreSQL; the CASE is a portable maximum of two timestamps (max() and greatest() differ).
UPSERT_DAILY = (
    "INSERT INTO activity_aliasdailycount (alias_id, day, accepted, refused, last_at) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (alias_id, day) DO UPDATE SET "
    "accepted = activity_aliasdailycount.accepted + excluded.accepted, "
    "refused = activity_aliasdailycount.refused + excluded.refused, "
    "last_at = CASE WHEN excluded.last_at > activity_aliasdailycount.last_at "
    "THEN excluded.last_at ELSE activity_aliasdailycount.last_at END"
)
UPSERT_TOTAL = (
    "INSERT INTO activity_aliastotal (alias_id, accepted, refused) VALUES (%s, %s, %s) "
    "ON CONFLICT (alias_id) DO UPDATE SET "
    "accepted = activity_aliastotal.accepted + excluded.accepted, "
    "refused = activity_aliastotal.refused + excluded.refused"
)
UPSERT_SENDER = (
    "INSERT INTO activity_aliassenderdomain (alias_id, domain, last_sender, accepted, refused, first_at, last_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (alias_id, domain) DO UPDATE SET "
    "accepted = activity_aliassenderdomain.accepted + excluded.accepted, "
    "refused = activity_aliassenderdomain.refused + excluded.refused, "
    "last_sender = excluded.last_sender, "
    "last_at = CASE WHEN excluded.last_at > activity_aliassenderdomain.last_at "
    "THEN excluded.last_at ELSE activity_aliassenderdomain.last_at END"
)


# Rows per statement: between chunks the flush thread lets the decisions run (see _chunks).
CHUNK = 500


def _chunks(cursor: CursorWrapper, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    for i in range(0, len(rows), CHUNK):
        cursor.executemany(statement, rows[i : i + CHUNK])
        time.sleep(0)  # give the interpreter to the event loop between chunks


def _adapter() -> Callable[[datetime], Any]:
    """The database's form of a timestamp, made once per distinct value (they repeat: the
    service counts with whole seconds)."""
    return cache(connection.ops.adapt_datetimefield_value)


def _upsert_daily(cursor: CursorWrapper, batch: Batch, live: set[int]) -> None:
    assert AliasDailyCount._meta.db_table == "activity_aliasdailycount"
    at, day_value = _adapter(), cache(connection.ops.adapt_datefield_value)
    rows = [
        (alias_id, day_value(day), c.accepted, c.refused, at(c.last_at))
        for (alias_id, day), c in batch.daily.items()
        if alias_id in live
    ]
    _chunks(cursor, UPSERT_DAILY, rows)


def _upsert_totals(cursor: CursorWrapper, batch: Batch, live: set[int]) -> None:
    assert AliasTotal._meta.db_table == "activity_aliastotal"
    totals: dict[int, list[int]] = {}
    for (alias_id, _), count in batch.daily.items():
        if alias_id in live:
            total = totals.setdefault(alias_id, [0, 0])
            total[0] += count.accepted
            total[1] += count.refused
    _chunks(cursor, UPSERT_TOTAL, [(alias_id, accepted, refused) for alias_id, (accepted, refused) in totals.items()])


def _upsert_senders(cursor: CursorWrapper, batch: Batch, live: set[int]) -> None:
    assert AliasSenderDomain._meta.db_table == "activity_aliassenderdomain"
    at = _adapter()
    rows = [
        (alias_id, domain, s.last_sender, s.accepted, s.refused, at(s.first_at), at(s.last_at))
        for (alias_id, domain), s in batch.senders.items()
        if alias_id in live
    ]
    _chunks(cursor, UPSERT_SENDER, rows)


def write_batch(batch: Batch) -> None:
    """One transaction of a few statements (INSERT … ON CONFLICT, in SQLite and PostgreSQL alike),
    so a flush holds the interpreter briefly; a counted alias deleted meanwhile is skipped."""
    with transaction.atomic():
        live = _existing_aliases(batch)
        with connection.cursor() as cursor:
            if batch.daily:
                _upsert_daily(cursor, batch, live)
                _upsert_totals(cursor, batch, live)
            if batch.senders:
                _upsert_senders(cursor, batch, live)
        for block_id, (mails, at) in batch.stopped.items():
            value = Value(at, output_field=DateTimeField())
            SenderBlock.objects.filter(pk=block_id).update(
                stopped=F("stopped") + mails, last_stopped_at=Greatest(Coalesce(F("last_stopped_at"), value), value)
            )
        flags = [
            LeakFlag(alias_id=alias_id, registrable_domain=registrable, sender_domain=sender_domain, flagged_at=at)
            for (alias_id, registrable), (sender_domain, at) in batch.leaks.items()
            if alias_id in live
        ]
        # Another mail host may have flagged the same alias and domain first: that one stays.
        LeakFlag.objects.bulk_create(flags, ignore_conflicts=True)
