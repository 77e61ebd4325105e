"""The explicit interface between the postfix app and the features that feed it.

A *map feature* gives the entries it wants in the tables; a *config feature* gives the
main.cf, master.cf and ldap: .cf lines it needs. Both are named in the settings
(POSTFIX_MAP_FEATURES, POSTFIX_CONFIG_FEATURES), so this app imports no feature: the features
import it (to request a publication) and never the other way round.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import NamedTuple, Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class Entry(NamedTuple):  # a tuple: a render makes one per alias, a million of them
    table: str
    key: str
    value: str
    # A catch-all key "@domain": the only kind of key that may start with "@".
    domain_wide: bool = False


class Entries(NamedTuple):
    """Many entries of one table at once, as two columns (keys[n] -> values[n]), in priority
    order: a feature's bulk, a row per alias, with no object per entry (a full render of a
    million aliases; the full-publication targets in docs/postfix.md)."""

    table: str
    keys: list[str]
    values: list[str]


@dataclass(frozen=True)
class Snapshot:
    """What a render reads besides the database: the time, and the directory's mailboxes."""

    now: datetime
    mailboxes: Mapping[str, str]  # uid -> mailbox address, as the directory has it now
    # Only entries with these keys are wanted (None: every entry). A hint: the renderer drops
    # other keys itself, a feature may use it to read less.
    keys: frozenset[str] | None = None


class MapFeature(Protocol):
    def entries(self, snapshot: Snapshot) -> Iterable[Entry | Entries]:
        """Every entry, in priority order: for a table other than virtual, the first value
        given for a key wins; virtual joins every target given for a key."""
        ...

    def due_keys(self, since: datetime, now: datetime) -> set[str]:
        """Keys whose entries changed by the passing of time in (since, now] (an expiry)."""
        ...

    def next_due(self, now: datetime) -> datetime | None:
        """When the passing of time next changes an entry, if it does."""
        ...


@dataclass(frozen=True)
class Restriction:
    """One item of a restriction list (smtpd_recipient_restrictions, ...): the generator
    joins the items of every feature for each list, by position."""

    parameter: str
    item: str
    position: int


@dataclass(frozen=True)
class ConfigContext:
    map_dir: Path
    config_dir: Path
    map_type: str
    ldap_password: str = "<the postfix service account's password>"
    # Optional master.cf services to include (a host without SASL has no submission).
    services: frozenset[str] = field(default_factory=lambda: frozenset({"submission"}))

    def table(self, name: str) -> str:
        return f"{self.map_type}:{self.map_dir / name}"


class ConfigFeature(Protocol):
    def main_cf(self, context: ConfigContext) -> list[str]: ...

    def restrictions(self, context: ConfigContext) -> list[Restriction]: ...

    def master_cf(self, context: ConfigContext) -> list[str]: ...

    def cf_files(self, context: ConfigContext) -> dict[str, list[str]]:
        """ldap: (or other) table files, by file name in the configuration directory."""
        ...


@cache
def _load(path: str) -> object:
    return import_string(path)


def map_features() -> list[MapFeature]:
    return [_load(path) for path in settings.POSTFIX_MAP_FEATURES]  # type: ignore[misc]


def config_features() -> list[ConfigFeature]:
    return [_load(path) for path in settings.POSTFIX_CONFIG_FEATURES]  # type: ignore[misc]


def directory_mailboxes(keys: frozenset[str] | None = None) -> dict[str, str]:
    """uid -> mailbox of every person, or at least of those a render of `keys` reads."""
    read = import_string(settings.POSTFIX_DIRECTORY_MAILBOXES)
    return read(keys)  # type: ignore[no-any-return]


def served_domains() -> set[str]:
    """Every domain whose mail the published tables route."""
    read = import_string(settings.POSTFIX_SERVED_DOMAINS)
    return read()  # type: ignore[no-any-return]
