"""Fixed-window counters in Redis (through mailadmin/redis_store.py): the API's rate limit.

A counter counts events in a fixed window that starts with its first event. Redis answers an
increment in well under a millisecond and atomically across every web worker and host; a
counter row in SQL would take the database's write lock on every counted event (with SQLite,
the one lock of the whole database).
"""

from dataclasses import dataclass

from django.conf import settings

from mailadmin.redis_store import Store

KEY_PREFIX = "mailadmin:counter:"


@dataclass(frozen=True)
class Count:
    value: int  # events in the window, this one included
    resets_in: int  # seconds until the window ends


def _store() -> Store:
    return Store(settings.REDIS_URL, settings.COUNTER_TIMEOUT)


def count(name: str, window: int) -> Count:
    """Count one event under `name` in a window of `window` seconds; RedisUnavailable when
    Redis does not answer."""
    value, ttl = _store().count_in_window(KEY_PREFIX + name, window)
    return Count(value=value, resets_in=max(1, ttl))


def reset(name: str) -> None:
    _store().delete([KEY_PREFIX + name])
