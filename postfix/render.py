"""The renderer: entries in, sorted table lines out. A pure function: no database, no
processes, no files. Every entry of every table passes the one key-safety rule here,
whatever feature or path produced it."""

import logging
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from operator import eq
from typing import NamedTuple

from postfix.features import Entries, Entry

logger = logging.getLogger(__name__)

# Tables whose value is a list of addresses, joined from every entry for a key.
LIST_TABLES = frozenset({"virtual"})

# The one rule. A token (a key, or one address of a list): no whitespace (it would split the
# line or add one), no comment sign, no list separators, no quotes or angle brackets, no control
# character; at most the length of an address. Unicode whitespace is spelled out (what \s and
# str.isspace() match; a test compares) so that the patterns are plain character sets, which
# the possessive patterns below check at ~70 ms a million keys, against ~0.5 s with \s.
WHITESPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_TOKEN = rf'{WHITESPACE}#,:"\'<>\\\x00-\x1f\x7f'
MAX_TOKEN = 320
SAFE_TOKEN = re.compile(rf"[^{_NOT_TOKEN}]{{1,{MAX_TOKEN}}}")
_PART = rf"[^{_NOT_TOKEN}@]++"
# A key is one token: a bare domain or local@domain, never an empty local part or domain nor
# two "@" (an alias row with an empty local part would refuse or route its whole domain) ...
_KEY = rf"{_PART}(?:@{_PART})?+"
# ... except that an entry marked domain_wide (a catch-all) has "@domain" and nothing else.
_DOMAIN_KEY = rf"@{_PART}"
# A virtual value is a list of tokens; another table's value is one printable line.
_TARGETS = rf"[^{_NOT_TOKEN}]{{1,{MAX_TOKEN}}}+(?:, [^{_NOT_TOKEN}]{{1,{MAX_TOKEN}}}+)*+"
_TEXT = r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f\x85\u2028\u2029]{0,998}[^\s\x00-\x1f\x7f])?"


class _Rule(NamedTuple):
    problem: str
    column: re.Pattern[str]  # every element of a column, one a line
    longest: int | None  # the longest element (a key's length; the value patterns bound theirs)


def _rule(problem: str, element: str, longest: int | None = None) -> _Rule:
    return _Rule(problem, re.compile(rf"(?:{element}\n)*+"), longest)


KEY = _rule("an unsafe key", _KEY, MAX_TOKEN)
DOMAIN_KEY = _rule("not a @domain key", _DOMAIN_KEY, MAX_TOKEN)
TARGETS = _rule("an unsafe target", _TARGETS)
TEXT = _rule("an unsafe value", _TEXT)


def _all_pass(column: Sequence[str], rule: _Rule) -> bool:
    """One pass of the rule over a whole column's text, an element a line (an element holding a
    line break of its own makes a line too many, and fails)."""
    if not column:
        return True
    if rule.longest is not None and max(map(len, column)) > rule.longest:
        return False
    text = "\n".join(column) + "\n"
    return text.count("\n") == len(column) and rule.column.fullmatch(text) is not None


def _failing(column: Sequence[str], rule: _Rule) -> list[int]:
    """The positions of the elements that fail the rule (looked for one by one only when the
    whole column fails)."""
    if _all_pass(column, rule):
        return []
    return [n for n, element in enumerate(column) if not _all_pass((element,), rule)]


class _Segment(NamedTuple):
    keys: list[str]
    values: list[str]
    domain_wide: bool


def _segments(entries: Iterable[Entry | Entries], tables: Sequence[str]) -> dict[str, list[_Segment]]:
    """Each table's entries in priority order, as runs of columns: an Entries as it is, single
    entries gathered while they come one after another."""
    found: dict[str, list[_Segment]] = {table: [] for table in tables}
    gathering: dict[str, _Segment] = {}
    for entry in entries:
        if entry.table not in found:
            raise ValueError(f"entry for a table that is not published: {entry.table}")
        if isinstance(entry, Entries):
            found[entry.table].append(_Segment(entry.keys, entry.values, False))
            gathering.pop(entry.table, None)
            continue
        segment = gathering.get(entry.table)
        if segment is None or segment.domain_wide != entry.domain_wide:
            segment = gathering[entry.table] = _Segment([], [], entry.domain_wide)
            found[entry.table].append(segment)
        segment.keys.append(entry.key)
        segment.values.append(entry.value)
    return found


class _KeyCheck(NamedTuple):
    chosen: list[int] | None  # the positions of the wanted keys (None: every key)
    keys: list[str]  # as given, for the log
    lowered: list[str]
    bad: dict[int, str]  # position -> problem


def _check_keys(segment: _Segment, wanted: frozenset[str] | None) -> _KeyCheck:
    keys, lowered = segment.keys, list(map(str.lower, segment.keys))
    chosen = None
    if wanted is not None:
        chosen = [n for n, key in enumerate(lowered) if key in wanted]
        keys, lowered = [keys[n] for n in chosen], [lowered[n] for n in chosen]
    rule = DOMAIN_KEY if segment.domain_wide else KEY
    return _KeyCheck(chosen, keys, lowered, dict.fromkeys(_failing(keys, rule), rule.problem))


def _checked(table: str, segment: _Segment, check: _KeyCheck) -> tuple[list[str], list[str], list[str]]:
    """A segment's lower-cased keys and values that pass the rule (and are wanted), and the
    keys of those that fail."""
    values = segment.values if check.chosen is None else [segment.values[n] for n in check.chosen]
    value_rule = TARGETS if table in LIST_TABLES else TEXT
    bad = check.bad
    distinct = list(set(values))  # a million aliases have a few thousand distinct values
    unsafe = {distinct[n] for n in _failing(distinct, value_rule)}
    if unsafe:
        bad = bad | {n: value_rule.problem for n, value in enumerate(values) if value in unsafe and n not in bad}
    if not bad:
        return check.lowered, values, []
    keys, lowered = check.keys, check.lowered
    dropped = [f"table {table}: entry {keys[n][:80]!r} left out ({problem})" for n, problem in sorted(bad.items())]
    kept = [n for n in range(len(keys)) if n not in bad]
    return [lowered[n] for n in kept], [values[n] for n in kept], dropped


def _merged(table: str, keys: list[str], values: list[str]) -> dict[str, str]:
    if table not in LIST_TABLES:
        return dict(zip(reversed(keys), reversed(values), strict=True))  # the first value given for a key wins
    merged = dict(zip(keys, values, strict=True))
    if len(merged) == len(keys) and ", " not in "\n".join(values):
        return merged  # a single target for each key: nothing to join
    joined: dict[str, list[str]] = {}
    for key, value in zip(keys, values, strict=True):
        targets = joined.setdefault(key, [])
        targets.extend(target for target in value.split(", ") if target not in targets)
    return {key: ", ".join(targets) for key, targets in joined.items()}


class _Sorted(NamedTuple):
    keys: list[str]  # in order
    order: list[int]  # their positions in the column
    unique: bool


def _sorted(keys: list[str]) -> _Sorted:
    order = sorted(range(len(keys)), key=keys.__getitem__)
    in_order = list(map(keys.__getitem__, order))
    return _Sorted(in_order, order, not any(map(eq, in_order, islice(in_order, 1, None))))


def _holds(ordered: list[str], key: str) -> bool:
    at = bisect_left(ordered, key)
    return at < len(ordered) and ordered[at] == key


class _Columns:
    """The checked columns of one render. A column that several tables share (virtual and
    sender_login both have a line per alias, from one list of addresses) is checked, lower-cased
    and sorted once: the full-publication targets (docs/postfix.md)."""

    def __init__(self, wanted: frozenset[str] | None) -> None:
        self.wanted = wanted
        self.key_checks: dict[tuple[int, bool], tuple[list[str], _KeyCheck]] = {}
        self.orders: dict[int, tuple[list[str], _Sorted]] = {}

    def checked(self, table: str, segment: _Segment) -> tuple[list[str], list[str], list[str]]:
        found = self.key_checks.get((id(segment.keys), segment.domain_wide))
        if found is None:
            found = self.key_checks[id(segment.keys), segment.domain_wide] = (
                segment.keys,  # held, so that its id is not reused while the render runs
                _check_keys(segment, self.wanted),
            )
        return _checked(table, segment, found[1])

    def sorted(self, keys: list[str]) -> _Sorted:
        found = self.orders.get(id(keys))
        if found is None:
            found = self.orders[id(keys)] = (keys, _sorted(keys))
        return found[1]

    def lines(self, table: str, columns: list[tuple[list[str], list[str]]]) -> list[str]:
        """A table's sorted "key value" lines from its checked columns, in priority order. When
        the largest column's keys are unique, none of the others' keys is among them and (in
        virtual) its values list one target each, its lines are made in the order of its sorted
        keys and only the other columns are merged; otherwise the whole table is."""
        if not columns:
            return []
        largest = max(range(len(columns)), key=lambda n: len(columns[n][0]))
        keys, values = columns[largest]
        rest_keys = [key for n, (column, _) in enumerate(columns) if n != largest for key in column]
        rest_values = [value for n, (_, column) in enumerate(columns) if n != largest for value in column]
        ordered = self.sorted(keys)
        if (
            ordered.unique
            and not any(_holds(ordered.keys, key) for key in rest_keys)
            and (table not in LIST_TABLES or ", " not in "\n".join(set(values)))
        ):
            lines = list(map(" ".join, zip(ordered.keys, map(values.__getitem__, ordered.order), strict=True)))
            lines += map(" ".join, _merged(table, rest_keys, rest_values).items())
            lines.sort()  # the largest column is one sorted run already: about a pass
            return lines
        every_key = [key for column, _ in columns for key in column]
        every_value = [value for _, column in columns for value in column]
        # A space sorts below every character a key may hold: sorting lines sorts keys.
        return sorted(map(" ".join, _merged(table, every_key, every_value).items()))


def render_each(
    entries: Iterable[Entry | Entries], tables: Sequence[str], keys: frozenset[str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Each table's sorted "key value" lines (only those of `keys` when given), one table at a
    time, so that a caller can build a table while the next one renders. An entry that fails
    the rule is left out and logged; keys are lower-cased as Postfix looks them up."""
    segments = _segments(entries, tables)
    columns = _Columns(keys)
    skipped = 0
    for table in tables:
        kept: list[tuple[list[str], list[str]]] = []
        for segment in segments[table]:
            lowered, values, dropped = columns.checked(table, segment)
            kept.append((lowered, values))
            for message in dropped[: max(0, 20 - skipped)]:
                logger.warning("%s", message)
            skipped += len(dropped)
        yield table, columns.lines(table, kept)
    if skipped > 20:
        logger.warning("%d unsafe entries left out in all", skipped)


def render(
    entries: Iterable[Entry | Entries], tables: Sequence[str], keys: frozenset[str] | None = None
) -> dict[str, list[str]]:
    return dict(render_each(entries, tables, keys))
