"""Sending counters shared by every mail host: Redis (through mailadmin/redis_store.py) with
expiring buckets.

Per sender, minute buckets (kept 61 minutes) sum to the last hour and hour buckets (kept 25
hours) to the last day, so a window slides instead of resetting on the hour. Sorted sets per
minute and per hour rank the heaviest senders. One pipelined round trip per counted recipient.

When Redis does not answer, counting goes on in this process's memory with the same buckets
(per host, so the limit holds on each host even if not across them) and the log says so once;
when Redis answers again the shared counts take over (what was counted locally meanwhile is not
carried over).
"""

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from limits.rules import Counts
from mailadmin.redis_store import RedisUnavailable, Store

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0
TIMEOUT_SECONDS = 0.5
# One call per counted recipient, run inside Redis (a pipeline of the same ~90 commands cost the
# policy service about 0.7 ms of CPU per decision to build and parse): add to this minute's and
# this hour's buckets and to the rankings, then sum the last 60 minutes and 24 hours. The key
# names are built here, as the Python code builds them (one Redis, not a cluster).
COUNT = """
local prefix, name, login = ARGV[1], ARGV[2], ARGV[3]
local minute, hour = tonumber(ARGV[4]), tonumber(ARGV[5])
local messages, recipients = tonumber(ARGV[6]), tonumber(ARGV[7])
local minute_ttl, hour_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local function key(...)
  return table.concat({prefix, ...}, ':')
end
for _, bucket in ipairs({{key(name, 'm', ARGV[4]), minute_ttl}, {key(name, 'h', ARGV[5]), hour_ttl}}) do
  redis.call('HINCRBY', bucket[1], 'm', messages)
  redis.call('HINCRBY', bucket[1], 'r', recipients)
  redis.call('EXPIRE', bucket[1], bucket[2])
end
for _, window in ipairs({{'m', ARGV[4], minute_ttl}, {'h', ARGV[5], hour_ttl}}) do
  for _, what in ipairs({{'r', recipients}, {'m', messages}}) do
    if what[2] > 0 then
      local top = key('top', what[1], window[1], window[2])
      redis.call('ZINCRBY', top, what[2], login)
      redis.call('EXPIRE', top, window[3])
    end
  end
end
local messages_hour, recipients_hour, recipients_day = 0, 0, 0
for m = minute - 59, minute do
  local got = redis.call('HMGET', key(name, 'm', string.format('%d', m)), 'm', 'r')
  messages_hour = messages_hour + (tonumber(got[1]) or 0)
  recipients_hour = recipients_hour + (tonumber(got[2]) or 0)
end
for h = hour - 23, hour do
  recipients_day = recipients_day + (tonumber(redis.call('HGET', key(name, 'h', string.format('%d', h)), 'r')) or 0)
end
return {messages_hour, recipients_hour, recipients_day}
"""
MINUTE_TTL = 61 * 60
HOUR_TTL = 25 * 3600
RECIPIENTS = "r"
MESSAGES = "m"


@dataclass(frozen=True)
class Sender:
    login: str
    recipients: int
    messages: int


def _minutes(now: float) -> range:
    current = math.floor(now / 60)
    return range(current - 59, current + 1)


def _hours(now: float) -> range:
    current = math.floor(now / 3600)
    return range(current - 23, current + 1)


class LocalCounters:
    """The per-host fallback: the same buckets in a dict, pruned as they age."""

    def __init__(self) -> None:
        self._minute: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self._hour: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])

    def add(self, login: str, messages: int, recipients: int, now: float) -> Counts:
        self._prune(now)
        minute, hour = math.floor(now / 60), math.floor(now / 3600)
        for bucket in (self._minute[(login, minute)], self._hour[(login, hour)]):
            bucket[0] += messages
            bucket[1] += recipients
        in_hour = [self._minute.get((login, m), [0, 0]) for m in _minutes(now)]
        in_day = [self._hour.get((login, h), [0, 0]) for h in _hours(now)]
        return Counts(
            messages_hour=sum(b[0] for b in in_hour),
            recipients_hour=sum(b[1] for b in in_hour),
            recipients_day=sum(b[1] for b in in_day),
        )

    def reset(self, login: str) -> None:
        for buckets in (self._minute, self._hour):
            for key in [k for k in buckets if k[0] == login]:
                del buckets[key]

    def _prune(self, now: float) -> None:
        oldest_minute, oldest_hour = _minutes(now).start, _hours(now).start
        for key in [k for k in self._minute if k[1] < oldest_minute]:
            del self._minute[key]
        for key in [k for k in self._hour if k[1] < oldest_hour]:
            del self._hour[key]


class Counters:
    def __init__(self, url: str, prefix: str = "mailadmin:out", clock: Callable[[], float] = time.time) -> None:
        self._store = Store(url, TIMEOUT_SECONDS)
        self._prefix = prefix
        self._clock = clock
        self._count = self._store.script(COUNT)
        self._local = LocalCounters()
        self.shared = True
        self._retry_at = 0.0

    def _key(self, *parts: object) -> str:
        return ":".join([self._prefix, *(str(p) for p in parts)])

    def add(self, login: str, messages: int, recipients: int) -> Counts:
        """Count `messages` and `recipients` for `login`; the counts over the windows after it.
        While Redis is down it is tried again every RETRY_SECONDS, not on every call, so a hung
        Redis cannot slow every answer."""
        now = self._clock()
        if self.shared or now >= self._retry_at:
            try:
                counts = self._add_shared(login, messages, recipients, now)
            except RedisUnavailable as exc:
                if self.shared:
                    log.warning("sending counters: Redis not answering (%s); counting on this host only", exc)
                    self.shared = False
                self._retry_at = now + RETRY_SECONDS
            else:
                if not self.shared:
                    log.warning("sending counters: Redis answers again; shared counting resumed")
                    self.shared = True
                return counts
        return self._local.add(login, messages, recipients, now)

    def reset(self, login: str) -> None:
        """Forget what `login` sent (an admin lifted their suspension): counting starts afresh."""
        self._local.reset(login)
        now = self._clock()
        name = quote(login, safe="@.-_+")
        keys = [self._key(name, "m", m) for m in _minutes(now)] + [self._key(name, "h", h) for h in _hours(now)]
        try:
            self._store.delete(keys)
        except RedisUnavailable as exc:
            log.warning("sending counters: could not reset %s in Redis (%s)", login, exc)

    def _add_shared(self, login: str, messages: int, recipients: int, now: float) -> Counts:
        name = quote(login, safe="@.-_+")
        minute, hour = math.floor(now / 60), math.floor(now / 3600)
        args: list[str | int] = [self._prefix, name, login, minute, hour, messages, recipients, MINUTE_TTL, HOUR_TTL]
        messages_hour, recipients_hour, recipients_day = self._count(args)
        return Counts(messages_hour, recipients_hour, recipients_day)

    def heaviest(self, window: str, limit: int = 25) -> list[Sender]:
        """The senders with the most recipients in the last hour ("hour") or day ("day").
        Raises RedisUnavailable when the store does not answer."""
        now = self._clock()
        kind, buckets = ("m", _minutes(now)) if window == "hour" else ("h", _hours(now))
        totals: dict[str, list[int]] = {}
        for index, what in enumerate((RECIPIENTS, MESSAGES)):
            keys = [self._key("top", what, kind, b) for b in buckets]
            for login, score in self._store.union_with_scores(keys):
                totals.setdefault(login, [0, 0])[index] = int(score)
        heaviest = sorted(totals.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))[:limit]
        return [Sender(login, recipients, messages) for login, (recipients, messages) in heaviest]
