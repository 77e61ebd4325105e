"""Counters in Redis (the Celery broker's server): the one place the app itself talks to Redis.

A counter counts events in a fixed window that starts with its first event. Redis answers an
increment in well under a millisecond and atomically across every web worker and host; a
counter row in SQL would take the database's write lock on every counted event (with SQLite,
the one lock of the whole database).
"""

from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

KEY_PREFIX = "mailadmin:counter:"


class CounterUnavailable(Exception):
    """Redis did not answer (down, unreachable, or too slow)."""


@dataclass(frozen=True)
class Count:
    value: int  # events in the window, this one included
    resets_in: int  # seconds until the window ends


@lru_cache(maxsize=1)
def _client() -> redis.Redis:
    timeout = settings.COUNTER_TIMEOUT
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def count(name: str, window: int) -> Count:
    """Count one event under `name` in a window of `window` seconds."""
    key = KEY_PREFIX + name
    try:
        pipeline = _client().pipeline(transaction=True)
        pipeline.incr(key)
        pipeline.expire(key, window, nx=True)  # the first event starts the window
        pipeline.ttl(key)
        value, _, ttl = pipeline.execute()
    except redis.RedisError as exc:
        raise CounterUnavailable(f"Redis did not answer: {exc.__class__.__name__}") from exc
    return Count(value=int(value), resets_in=max(1, int(ttl)))


def reset(name: str) -> None:
    try:
        _client().delete(KEY_PREFIX + name)
    except redis.RedisError as exc:
        raise CounterUnavailable(f"Redis did not answer: {exc.__class__.__name__}") from exc
