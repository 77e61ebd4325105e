"""Redis (the Celery broker's server), the one module that talks to it: the counters of the
API's rate limit (mailadmin/counters.py) and of outbound limits (limits/counters.py) use it, and
the map publication's mark of a queued run (postfix/publication.py).

Each Redis address has one client per process, shared by every caller and thread (redis-py
keeps a pool of connections in it), so a page or a policy decision reuses an open connection.
Every call raises RedisUnavailable when Redis does not answer within the store's timeout.
"""

from collections.abc import Sequence
from functools import lru_cache

import redis


class RedisUnavailable(Exception):
    """Redis did not answer (down, unreachable, or too slow)."""


@lru_cache(maxsize=16)
def _client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _unavailable(exc: redis.RedisError) -> RedisUnavailable:
    return RedisUnavailable(f"Redis did not answer: {exc.__class__.__name__}")


class Script:
    """A Lua script run inside Redis (sent once, then called by its digest)."""

    def __init__(self, script: "redis.commands.core.Script") -> None:
        self._script = script

    def __call__(self, args: Sequence[str | int]) -> list[int]:
        try:
            result = self._script(keys=[], args=list(args))
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return [int(value) for value in result]


class Store:
    def __init__(self, url: str, timeout: float) -> None:
        self._redis = _client(url, timeout)

    def count_in_window(self, key: str, window: int) -> tuple[int, int]:
        """Add one to `key`, whose window of `window` seconds starts with its first count;
        (the count, seconds until the window ends), in one transaction."""
        try:
            pipeline = self._redis.pipeline(transaction=True)
            pipeline.incr(key)
            pipeline.expire(key, window, nx=True)
            pipeline.ttl(key)
            value, _, ttl = pipeline.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return int(value), int(ttl)

    def add(self, key: str, seconds: int) -> bool:
        """Set `key` for `seconds` unless it is set; whether this call set it."""
        try:
            return bool(self._redis.set(key, 1, nx=True, ex=seconds))
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def delete(self, keys: Sequence[str]) -> None:
        try:
            self._redis.delete(*keys)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def script(self, source: str) -> Script:
        return Script(self._redis.register_script(source))

    def union_with_scores(self, keys: Sequence[str]) -> list[tuple[str, float]]:
        """The members of the sorted sets `keys` with their scores summed, lowest first."""
        try:
            union: list[tuple[bytes, float]] = self._redis.zunion(list(keys), withscores=True, aggregate="SUM")  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return [(member.decode(), float(score)) for member, score in union]
