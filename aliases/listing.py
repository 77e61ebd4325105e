"""The alias list's table: its columns, and its rows as a pure function of the aliases.

COLUMNS is an open table. Another app adds a Column (its heading, the AliasSearchForm.SORTS key
it sorts by, the values it needs — its own reached through a reverse relation, e.g.
"activity__last_mail_at" — and a function giving the cell's HTML); the heading, the sort link
and the cell of every row follow. A row is the dict of those values (QuerySet.values(): no
model instances), built into HTML in Python rather than by the template engine (see
docs/alias-list.md for the measurements).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape  # the standard library's: Django's checks every argument for lazy text
from typing import Any, cast, overload

from django.db.models import Count, DateTimeField, IntegerField, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from aliases.activity_columns import with_activity
from aliases.forms import AliasSearchForm
from aliases.models import Alias
from mailadmin import compiled_sql
from mailadmin.compiled_sql import Slot
from mailadmin.dates import RelativeTimes

PLACEHOLDER = 2_147_483_647  # a pk no alias has, replaced by each row's own
# What every row has; a column adds its own with Column.fields.
BASE_FIELDS = ("id", "local_part", "domain__name", "site", "label", "enabled", "expires_at", "created_at")

Values = dict[str, Any]  # one alias as QuerySet.values() gives it


@dataclass(frozen=True)
class RowContext:
    """What every row needs besides its alias: the moment, the alias URLs with {pk}, and the
    |relative of the page's dates."""

    now: datetime
    detail_url: str
    disable_url: str
    enable_url: str
    relative: RelativeTimes

    @classmethod
    def at(cls, now: datetime) -> "RowContext":
        def pattern(name: str) -> str:
            return reverse(name, args=[PLACEHOLDER]).replace(str(PLACEHOLDER), "{pk}")

        return cls(
            now, pattern("aliases:detail"), pattern("aliases:disable"), pattern("aliases:enable"), RelativeTimes(now)
        )


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    cell: Callable[[Values, RowContext], str]  # HTML, escaped
    sort: str = ""  # a key of AliasSearchForm.SORTS; "" for a column that does not sort
    fields: tuple[str, ...] = ()  # values the cell reads besides BASE_FIELDS


def address_of(alias: Values) -> str:
    return f"{alias['local_part']}@{alias['domain__name']}"


def _address(alias: Values, row: RowContext) -> str:
    address = escape(address_of(alias))
    url = row.detail_url.format(pk=alias["id"])
    return (
        f'<a href="{url}" class="mono">{address}</a> <button type="button" class="button-link" '
        f'data-copy="{address}" aria-label="Copy {address}" hidden>Copy</button>'
    )


def _status(alias: Values, row: RowContext) -> str:
    if not alias["enabled"]:
        state = '<span class="badge badge-off">off</span>'
    elif alias["expires_at"] is not None and alias["expires_at"] <= row.now:
        state = '<span class="badge badge-danger">expired</span>'
    else:
        state = '<span class="badge badge-ok">on</span>'
    leak = alias.get("leak_domain")
    if leak:
        leak = escape(leak)
        state += f' <span class="badge badge-danger" title="mail from {leak}">possibly leaked: {leak}</span>'
    return state


def _last_mail(alias: Values, row: RowContext) -> str:
    at = alias.get("last_mail_at")
    return row.relative(at) if at else '<span class="muted">never</span>'


COLUMNS: list[Column] = [
    Column("address", "Address", _address, sort="address"),
    Column("site", "Site", lambda alias, row: escape(alias["site"]), sort="site"),
    Column("note", "Note", lambda alias, row: escape(alias["label"]), sort="note"),
    Column("created", "Created", lambda alias, row: row.relative(alias["created_at"]), sort="created"),
    Column("status", "Status", _status, fields=("leak_domain",)),
    # Alias activity: annotations through the activity app's reverse relations (activity_columns.py).
    Column("last_mail", "Last mail", _last_mail, sort="last_mail", fields=("last_mail_at",)),
    Column("mails", "Mails (30 days)", lambda alias, row: str(alias["mails_30d"]), sort="mails", fields=("mails_30d",)),
    Column(
        "refused",
        "Refused (30 days)",
        lambda alias, row: str(alias["refused_30d"]),
        sort="refused",
        fields=("refused_30d",),
    ),
]


def _switch(alias: Values, row: RowContext) -> str:
    if alias["enabled"]:
        url, label = row.disable_url.format(pk=alias["id"]), "Switch off"
    else:
        url, label = row.enable_url.format(pk=alias["id"]), "Switch on"
    return (
        f'<button type="submit" form="alias-bulk" formaction="{url}" class="button button-secondary" '
        f"data-inline>{label}</button>"
    )


def render_row(alias: Values, row: RowContext, message: str = "") -> str:
    """One <tr>; the controls belong to the form "alias-bulk" above the table (form attribute)."""
    pk = alias["id"]
    address = escape(address_of(alias))
    said = f' data-message="{escape(message)}"' if message else ""
    cells = "".join(f"<td>{column.cell(alias, row)}</td>" for column in COLUMNS)
    return (
        f'<tr id="alias-{pk}"{said}><td class="select"><input type="checkbox" name="ids" value="{pk}" '
        f'form="alias-bulk" id="select-{pk}" aria-label="Select {address}"></td>{cells}'
        f"<td>{_switch(alias, row)}</td></tr>"
    )


def render_rows(aliases: list[Values], row: RowContext) -> SafeString:
    return mark_safe("\n".join(render_row(alias, row) for alias in aliases))  # noqa: S308 -- every value escaped above


def fields() -> list[str]:
    """The values a row of the list holds: BASE_FIELDS and every column's own."""
    extra = [name for column in COLUMNS for name in column.fields if name not in BASE_FIELDS]
    return [*BASE_FIELDS, *dict.fromkeys(extra)]


# The rows' query is built (its expressions resolved) once per process and key, then only narrowed
# to one person's aliases per request: resolving the activity subqueries cost ~0.8 ms a page.
# Queries, not data: every request still asks the database.
_QUERIES: dict[str, tuple[object, QuerySet[Alias, Any]]] = {}


def _built(kind: str, key: object, build: Callable[[], QuerySet[Alias, Any]]) -> QuerySet[Alias, Any]:
    held = _QUERIES.get(kind)
    if held is None or held[0] != key:
        held = _QUERIES[kind] = (key, build())
    return held[1]


def values(**lookups: object) -> QuerySet[Alias, Values]:
    """The rows of the aliases these lookups select (owner_id=..., pk=...)."""
    key = (timezone.now().date(), *fields())  # the activity columns count the last 30 days
    return _built("rows", key, lambda: with_activity(Alias.objects.all()).values(*fields())).filter(**lookups)


def values_of(alias: Alias) -> Values:
    """One alias as a row of the list (for the row the in-place switch sends back)."""
    return values(pk=alias.pk).get()


OWNER = Slot("owner", IntegerField())
MOMENT = cast(datetime, Slot("now", DateTimeField()))  # for the states' conditions, typed as what they take


def state_counts(owner_id: int, search: AliasSearchForm, now: datetime) -> dict[str, int]:
    """How many of this person's aliases there are in all and in each state at `now` (one query)."""
    states = tuple(search.STATES.items())

    def build() -> QuerySet[Alias, Any]:
        counts = {key: Count("id", filter=state.matches(MOMENT)) for key, state in states}
        return Alias.objects.order_by().filter(owner_id=OWNER).values("owner_id").annotate(all=Count("id"), **counts)

    # Compiled once (mailadmin/compiled_sql.py): building and compiling the filtered counts cost
    # twice what running them does.
    found = compiled_sql.run(Alias, ("alias counts", states), build, owner=owner_id, now=now)
    row = found[0] if found else {}
    return {key: row.get(key, 0) for key in ("all", *search.STATES)}


class OwnRows(Sequence[Values]):
    """One person's aliases as a search without text selects and orders them, for the Paginator:
    the length is given (the state counts hold it), and a slice runs the SQL compiled for that
    state, sort and slice, compiled once (mailadmin/compiled_sql.py: building and compiling the
    activity subqueries cost more than running them). A text search goes through the ORM:
    values() and AliasSearchForm.filter."""

    def __init__(self, owner_id: int, search: AliasSearchForm, now: datetime, count: int) -> None:
        self.owner_id, self.search, self.now, self._count = owner_id, search, now, count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, part: int) -> Values: ...
    @overload
    def __getitem__(self, part: slice) -> list[Values]: ...
    def __getitem__(self, part: int | slice) -> Values | list[Values]:
        if isinstance(part, int):
            found = self[part : part + 1]
            if not found:
                raise IndexError(part)
            return found[0]
        if part.stop is not None and part.stop <= (part.start or 0):
            return []  # as an empty slice of a QuerySet: no query
        search = self.search
        key = ("alias rows", timezone.now().date(), *fields(), search.state_key, search.sort_key, part.start, part.stop)

        def build() -> QuerySet[Alias, Values]:
            return search.filter(values(owner_id=OWNER), MOMENT)[part]

        return compiled_sql.run(Alias, key, build, owner=self.owner_id, now=self.now)


def filter_links(search: AliasSearchForm, counts: dict[str, int]) -> list[tuple[str, str, int, str]]:
    """(state key, label, count, link) for All and each state."""
    return [("", "All", counts["all"], search.link(state=""))] + [
        (key, state.label.capitalize(), counts[key], search.link(state=key)) for key, state in search.STATES.items()
    ]


def headings(search: AliasSearchForm) -> list[tuple[Column, str, str]]:
    """(column, the link that sorts by it or "", its aria-sort value or "")."""
    result = []
    for column in COLUMNS:
        sort, aria_sort = search.sort_link(column.sort)
        result.append((column, search.link(sort=sort) if sort else "", aria_sort))
    return result
