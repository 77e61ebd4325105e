"""Postfix log lines in, delivery records out: a pure function of the lines and a small state.

A message's facts arrive on separate lines under its queue id: smtpd names the client
(`client=`), qmgr the envelope sender (`from=`, again at every delivery attempt), each delivery
agent one recipient (`to=`, `orig_to=`, relay, delay, dsn, status), and qmgr its expiry (`from=
..., status=expired`, which names no recipient: the deferred ones are remembered for it).
`removed` ends the queue id. Mail refused at SMTP never gets a queue id (`NOQUEUE: reject:`).

Only envelope facts and Postfix's status text are read: cleanup's lines (message-id, header
and body checks, which quote headers such as the subject) are skipped by the daemon's name.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

SENT, DEFERRED, BOUNCED, EXPIRED, REJECTED = "sent", "deferred", "bounced", "expired", "rejected"
STATUSES = (SENT, DEFERRED, BOUNCED, EXPIRED, REJECTED)
# A queue id with no end line (a log that started mid-way, a lost `removed`) must not hold
# memory for ever: past this many open ones the oldest are forgotten.
MAX_OPEN_MESSAGES = 100_000
MAX_TEXT = 1000  # a status or reply text longer than this is cut (Postfix's own are far shorter)
MAX_FIELD = 320

# "Dec 07 08:15:03 host postfix/smtp[123]: 3F1A2B4C5D: ..." (postlogd, traditional syslog) or
# "2026-12-07T08:15:03.123456+01:00 host ..." (rsyslog's high-precision format). Lines that do
# not name a queue id (connect, disconnect, warnings) fail here, which is most of a log.
_HEADER = re.compile(
    r"(?P<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))"
    r" \S+ (?:[^\s\[]*/)?(?P<daemon>[^\s/\[]+)\[\d+\]: (?P<queue>NOQUEUE|[0-9A-F]{6,}|[0-9A-Za-z]{10,}): "
)
_DELIVERY = re.compile(
    r"to=<(?P<to>.*?)>, (?:orig_to=<(?P<orig>.*?)>, )?relay=(?P<relay>[^,]*), (?:conn_use=\d+, )?"
    r"delay=(?P<delay>[\d.]+), delays=[\d./]+, dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}), status=(?P<status>\w+)"
    r"(?: \((?P<text>.*)\))?\Z"
)
_REJECT = re.compile(
    r"(?:milter-)?reject: (?P<stage>[A-Z-]+) from (?P<client>[^\s\[]*\[[^\]]*\](?::\d+)?): (?P<reply>.*);"
    r" from=<(?P<from>.*?)>(?:,? to=<(?P<to>.*?)>)?(?:,? proto=[^\s,]+)?(?:,? helo=<.*>)?\Z"  # postscreen: commas
)
_DSN_IN_REPLY = re.compile(r"\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b")
_MONTHS = {name: n for n, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
# Daemons whose lines are never read: cleanup quotes headers (the subject) in its check results.
_SKIPPED_DAEMONS = frozenset({"cleanup"})


@dataclass(frozen=True, slots=True)
class Record:
    logged_at: datetime
    queue_id: str  # "" for mail refused before it was queued
    client: str  # "host[address]" as smtpd logged it, "local" for the pickup daemon, "" unknown
    sender: str  # the envelope sender, lower-case; "" for the null sender or unknown
    recipient: str
    original_recipient: str  # before virtual aliasing, when it differed
    status: str
    relay: str
    dsn: str
    delay: float | None  # seconds from arrival to this outcome
    reply: str  # Postfix's status text, or the SMTP reply of a reject


@dataclass(slots=True)
class _Open:
    """What is known about a queued message until its `removed` line."""

    client: str = ""
    sender: str = ""
    # recipient -> (original recipient, dsn, last deferral text): the ones that may yet expire
    deferred: dict[str, tuple[str, str, str]] | None = None


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _address(text: str) -> str:
    return _cut(text, MAX_FIELD).lower()


class Parser:
    """Feed it lines in log order; it returns the records they complete. `state()` and
    `Parser(state=...)` carry the open messages across a restart of the follower."""

    def __init__(self, zone: tzinfo = UTC, state: dict[str, Any] | None = None) -> None:
        self.zone = zone
        self.open: dict[str, _Open] = {}
        self._stamp = ""
        self._stamp_time = datetime.min.replace(tzinfo=UTC)
        self._now = datetime.now(UTC)
        for queue_id, (client, sender, deferred) in (state or {}).get("open", {}).items():
            self.open[queue_id] = _Open(client, sender, {r: tuple(v) for r, v in deferred.items()} or None)

    def state(self) -> dict[str, Any]:
        return {
            "open": {
                queue_id: [facts.client, facts.sender, {r: list(v) for r, v in (facts.deferred or {}).items()}]
                for queue_id, facts in self.open.items()
            }
        }

    def parse(self, lines: Iterable[str], now: datetime | None = None) -> list[Record]:
        """The records these lines complete. `now` places a year-less timestamp in the latest
        year that does not put it more than a day in the future."""
        self._now = now or datetime.now(UTC)
        records: list[Record] = []
        match = _HEADER.match
        for line in lines:
            header = match(line)
            if header is None or header["daemon"] in _SKIPPED_DAEMONS:
                continue
            try:
                self._line(header, line[header.end() :].rstrip("\r\n"), records)
            except (ValueError, KeyError):
                # A timestamp or number no Postfix wrote ("Feb 30", "delay=1.2.3"): skipped, or
                # the follower would stop at this line for ever.
                continue
        return records

    def _line(self, header: re.Match[str], rest: str, records: list[Record]) -> None:
        queue_id = header["queue"]
        if rest.startswith("to=<"):
            self._delivery(queue_id, rest, header["time"], records)
        elif rest.startswith("from=<"):
            self._sender(queue_id, rest, header["time"], records)
        elif rest.startswith("client="):
            self._facts(queue_id).client = _cut(rest[7:].split(", ", 1)[0], MAX_FIELD)
        elif rest.startswith(("reject: ", "milter-reject: ")):
            self._reject(queue_id, rest, header["time"], records)
        elif rest == "removed":
            self.open.pop(queue_id, None)
        elif rest.startswith("uid=") and header["daemon"] == "pickup":
            self._facts(queue_id).client = "local"

    def _facts(self, queue_id: str) -> _Open:
        facts = self.open.get(queue_id)
        if facts is None:
            if len(self.open) >= MAX_OPEN_MESSAGES:
                del self.open[next(iter(self.open))]
            facts = self.open[queue_id] = _Open()
        return facts

    def _time(self, stamp: str) -> datetime:
        if stamp == self._stamp:  # lines come in bursts within one second
            return self._stamp_time
        if stamp[4] == "-":
            when = datetime.fromisoformat(stamp)
        else:
            month, day, clock = stamp[:3], int(stamp[4:6]), stamp[7:]
            hour, minute, second = int(clock[:2]), int(clock[3:5]), int(clock[6:8])
            now = self._now.astimezone(self.zone)
            try:
                when = datetime(now.year, _MONTHS[month], day, hour, minute, second, tzinfo=self.zone)
            except ValueError:  # 29 February, read in the year after
                when = datetime(now.year - 1, _MONTHS[month], day, hour, minute, second, tzinfo=self.zone)
            if when > now + timedelta(days=1):  # December's lines read in January
                when = when.replace(year=now.year - 1)
        self._stamp, self._stamp_time = stamp, when
        return when

    def _delivery(self, queue_id: str, rest: str, stamp: str, records: list[Record]) -> None:
        found = _DELIVERY.match(rest)
        if found is None or found["status"] not in (SENT, DEFERRED, BOUNCED):
            return  # address verification probes (deliverable/undeliverable) are not mail
        facts = self._facts(queue_id)
        recipient, original = _address(found["to"]), _address(found["orig"] or "")
        status, dsn, text = found["status"], found["dsn"], _cut(found["text"] or "")
        if status == DEFERRED:
            if facts.deferred is None:
                facts.deferred = {}
            facts.deferred[recipient] = (original, dsn, text)
        elif facts.deferred:
            facts.deferred.pop(recipient, None)
        records.append(
            Record(
                self._time(stamp),
                queue_id,
                facts.client,
                facts.sender,
                recipient,
                original,
                status,
                _cut(found["relay"], MAX_FIELD),
                dsn,
                float(found["delay"]),
                text,
            )
        )

    def _sender(self, queue_id: str, rest: str, stamp: str, records: list[Record]) -> None:
        sender, _, tail = rest[6:].partition(">, ")
        facts = self._facts(queue_id)
        facts.sender = _address(sender)
        if not tail.startswith("status=expired"):
            return
        when = self._time(stamp)
        for recipient, (original, dsn, text) in (facts.deferred or {"": ("", "", "")}).items():
            records.append(
                Record(when, queue_id, facts.client, facts.sender, recipient, original, EXPIRED, "", dsn, None, text)
            )
        facts.deferred = None

    def _reject(self, queue_id: str, rest: str, stamp: str, records: list[Record]) -> None:
        found = _REJECT.match(rest)
        if found is None:
            return
        reply = _cut(found["reply"])
        dsn = _DSN_IN_REPLY.match(reply)
        records.append(
            Record(
                self._time(stamp),
                "" if queue_id == "NOQUEUE" else queue_id,
                _cut(found["client"], MAX_FIELD),
                _address(found["from"]),
                _address(found["to"] or ""),
                "",
                REJECTED,
                "",
                dsn.group(1) if dsn else "",
                None,
                reply,
            )
        )
