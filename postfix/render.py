"""The renderer: entries in, sorted table lines out. A pure function: no database, no
processes, no files. Every line of every table passes the one key-safety rule here,
whatever feature or path produced it."""

import logging
import re
from collections.abc import Iterable, Sequence

from postfix.features import Entry

logger = logging.getLogger(__name__)

# Tables whose value is a list of addresses, joined from every entry for a key.
LIST_TABLES = frozenset({"virtual"})

# A token of a table line (a key, or one address of a list): no whitespace (it would split the
# line or add one), no comment sign, no list separators, no quotes or angle brackets, no
# control character; at most the length of an address.
MAX_TOKEN = 320
SAFE_TOKEN = re.compile(rf'[^\s#,:"\'<>\\\x00-\x1f\x7f]{{1,{MAX_TOKEN}}}')
# A free-text value (a reject reply, a transport, a path): one printable line.
SAFE_TEXT = re.compile(r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f\x85\u2028\u2029]{0,998}[^\s\x00-\x1f\x7f])?")


def key_problem(entry: Entry) -> str | None:
    """Why an entry's key may not be written (None: it may)."""
    key = entry.key
    if not SAFE_TOKEN.fullmatch(key):
        return "unsafe characters"
    if entry.domain_wide:
        # "@domain" and nothing else: the catch-all of one domain.
        return None if key.count("@") == 1 and key.startswith("@") and len(key) > 1 else "not a @domain key"
    if key.startswith("@") or key.endswith("@") or key.count("@") > 1:
        # An empty local part would make an alias row refuse or route its whole domain.
        return "an empty local part or domain"
    return None


def value_problem(entry: Entry) -> str | None:
    if entry.table in LIST_TABLES:
        safe = all(SAFE_TOKEN.fullmatch(target) for target in entry.value.split(", "))
        return None if safe else "an unsafe target"
    return None if SAFE_TEXT.fullmatch(entry.value) else "an unsafe value"


def render(entries: Iterable[Entry], tables: Sequence[str], keys: frozenset[str] | None = None) -> dict[str, list[str]]:
    """Each table's sorted "key value" lines (only those of `keys` when given). An entry that
    fails the rule is left out and logged; keys are lower-cased as Postfix looks them up."""
    found: dict[str, dict[str, list[str]]] = {table: {} for table in tables}
    skipped = 0
    for entry in entries:
        key = entry.key.lower()
        if keys is not None and key not in keys:
            continue
        if entry.table not in found:
            raise ValueError(f"entry for a table that is not published: {entry.table}")
        problem = key_problem(entry) or value_problem(entry)
        if problem:
            skipped += 1
            if skipped <= 20:
                logger.warning("table %s: entry %r left out (%s)", entry.table, entry.key[:80], problem)
            continue
        values = found[entry.table].setdefault(key, [])
        if entry.table in LIST_TABLES:
            values.extend(target for target in entry.value.split(", ") if target not in values)
        elif not values:
            values.append(entry.value)
    if skipped > 20:
        logger.warning("%d unsafe entries left out in all", skipped)
    # A space sorts below every character a key may hold: sorting lines sorts keys.
    return {table: sorted(f"{key} {', '.join(values)}" for key, values in found[table].items()) for table in tables}
