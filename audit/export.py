"""The audit log as CSV, row by row: a pure renderer from event rows to text lines, so an
export of any size streams in constant memory."""

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from typing import Protocol

from audit.actions import action_name

HEADER = ("time", "actor", "action", "action code", "target", "detail", "client address")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

EventRow = tuple[datetime, str, str, str, str, str | None]  # as AuditEvent values_list(*EXPORT_FIELDS)
EXPORT_FIELDS = ("created_at", "actor_name", "action", "target", "detail", "client_address")


class _Writer(Protocol):
    def writerow(self, row: Iterable[str]) -> object: ...


class _Line:
    """A file-like object whose write() hands back what csv.writer wrote."""

    def write(self, text: str) -> str:
        return text


def _cell(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_lines(rows: Iterable[EventRow], zone: tzinfo) -> Iterator[str]:
    """Lines of CSV (RFC 4180, CRLF) for these events, times in this time zone (the viewer's:
    the lines are written after the request's own time zone is no longer active)."""
    writer: _Writer = csv.writer(_Line())
    yield str(writer.writerow(HEADER))
    for created_at, actor, action, target, detail, address in rows:
        yield str(
            writer.writerow(
                (
                    created_at.astimezone(zone).isoformat(timespec="seconds"),
                    _cell(actor) or "system",
                    action_name(action),
                    _cell(action),
                    _cell(target),
                    _cell(detail),
                    address or "",
                )
            )
        )
