"""The renderer: entries in, sorted table lines out. A pure function: no database, no
processes, no files. Every entry of every table passes the one key-safety rule here,
whatever feature or path produced it."""

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
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


def _checked(table: str, segment: _Segment, wanted: frozenset[str] | None) -> tuple[list[str], list[str], list[str]]:
    """A segment's lower-cased keys and values that pass the rule (and are wanted), and the
    keys of those that fail."""
    keys, values, lowered = segment.keys, segment.values, list(map(str.lower, segment.keys))
    if wanted is not None:
        chosen = [n for n, key in enumerate(lowered) if key in wanted]
        keys, values, lowered = [keys[n] for n in chosen], [values[n] for n in chosen], [lowered[n] for n in chosen]
    key_rule = DOMAIN_KEY if segment.domain_wide else KEY
    value_rule = TARGETS if table in LIST_TABLES else TEXT
    bad = dict.fromkeys(_failing(keys, key_rule), key_rule.problem)
    distinct = list(set(values))  # a million aliases have a few thousand distinct values
    unsafe = {distinct[n] for n in _failing(distinct, value_rule)}
    if unsafe:
        bad.update((n, value_rule.problem) for n, value in enumerate(values) if value in unsafe and n not in bad)
    if not bad:
        return lowered, values, []
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


def render_each(
    entries: Iterable[Entry | Entries], tables: Sequence[str], keys: frozenset[str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Each table's sorted "key value" lines (only those of `keys` when given), one table at a
    time, so that a caller can build a table while the next one renders. An entry that fails
    the rule is left out and logged; keys are lower-cased as Postfix looks them up."""
    segments = _segments(entries, tables)
    skipped = 0
    for table in tables:
        keys_kept: list[str] = []
        values_kept: list[str] = []
        for segment in segments[table]:
            lowered, values, dropped = _checked(table, segment, keys)
            keys_kept += lowered
            values_kept += values
            for message in dropped[: max(0, 20 - skipped)]:
                logger.warning("%s", message)
            skipped += len(dropped)
        # A space sorts below every character a key may hold: sorting lines sorts keys.
        yield table, sorted(map(" ".join, _merged(table, keys_kept, values_kept).items()))
    if skipped > 20:
        logger.warning("%d unsafe entries left out in all", skipped)


def render(
    entries: Iterable[Entry | Entries], tables: Sequence[str], keys: frozenset[str] | None = None
) -> dict[str, list[str]]:
    return dict(render_each(entries, tables, keys))
