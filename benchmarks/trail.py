"""The delivery trail's log follower over a generated log in Postfix's real format.

scripts/bench trail [--lines N] [--catch-up-mb M]

1. Parsing: N lines (default 500,000) of a mail host's log (connections, cleanup, qmgr,
   deliveries by lmtp/smtp/virtual to one or several recipients, deferrals, bounces, expiries
   and NOQUEUE rejects) through trail.parser; the baseline is reading and splitting the same
   file into lines in the same run. Target: at least 50,000 lines/s.
2. Catching up: a log of M megabytes (default 1024) followed from the start into the database
   by trail.services.Follower, with the peak RSS of the process before and after (bounded: the
   follower holds one chunk of lines and the open messages, whatever the file's size).
"""

import argparse
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from trail import parser  # noqa: E402
from trail.logfile import Position  # noqa: E402
from trail.models import Delivery  # noqa: E402
from trail.services import Follower  # noqa: E402

HOSTS = ["mx.retailer.example[192.0.2.7]", "mail.partner.example[198.51.100.20]", "localhost[127.0.0.1]"]
SENDERS = ["shop@retailer.example", "news@lists.example", "anna.berg@example.org", ""]


def _queue_id(n: int) -> str:
    return f"{0x4A00000000 + n * 7919:X}"


def message_lines(n: int, stamp: str, rng: random.Random) -> list[str]:
    """One message's lines as Postfix logs them, chosen by n: delivered to one or several local
    mailboxes (lmtp, virtual), relayed out (smtp), deferred then expired, bounced, or refused at
    RCPT without a queue id."""
    pid = 1000 + n % 5000
    head = f"{stamp} mail postfix"
    client = HOSTS[n % len(HOSTS)]
    sender = SENDERS[n % len(SENDERS)]
    qid = _queue_id(n)
    kind = n % 10
    connect = [
        f"{head}/smtpd[{pid}]: connect from {client}",
    ]
    if kind == 9:  # refused at RCPT: no queue id
        return [
            *connect,
            f"{head}/smtpd[{pid}]: NOQUEUE: reject: RCPT from {client}: 550 5.1.1 <old{n}@alias.example.org>: "
            f"Recipient address rejected: This address is disabled; from=<{sender}> to=<old{n}@alias.example.org> "
            f"proto=ESMTP helo=<{client.split('[')[0]}>",
            f"{head}/smtpd[{pid}]: disconnect from {client} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
        ]
    recipients = [f"user{(n + k) % 997}@example.org" for k in range(1 + (n % 3 == 0) * 2)]
    lines = [
        *connect,
        f"{head}/smtpd[{pid}]: {qid}: client={client}",
        f"{head}/cleanup[{pid + 1}]: {qid}: message-id=<{n}.{rng.getrandbits(32):x}@retailer.example>",
        f"{head}/smtpd[{pid}]: disconnect from {client} ehlo=1 mail=1 rcpt={len(recipients)} data=1 quit=1 commands=5",
        f"{head}/qmgr[900]: {qid}: from=<{sender}>, size={2000 + n % 90000}, nrcpt={len(recipients)} (queue active)",
    ]
    delays = "delay=0.12, delays=0.05/0.01/0.02/0.04"
    if kind in (0, 1, 2, 3, 4):
        for to in recipients:
            lines.append(
                f"{head}/lmtp[{pid + 2}]: {qid}: to=<{to}>, relay=mail.example.org[private/dovecot-lmtp], {delays}, "
                f"dsn=2.0.0, status=sent (250 2.0.0 <{to}> {rng.getrandbits(40):x} Saved)"
            )
    elif kind == 5:
        lines.append(
            f"{head}/virtual[{pid + 2}]: {qid}: to=<{recipients[0]}>, orig_to=<shop{n}@alias.example.org>, "
            f"relay=virtual, {delays}, dsn=2.0.0, status=sent (delivered to maildir)"
        )
    elif kind == 6:
        lines.append(
            f"{head}/smtp[{pid + 2}]: {qid}: to=<friend{n}@remote.example>, relay=mx.remote.example[203.0.113.9]:25, "
            f"{delays}, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {rng.getrandbits(40):X})"
        )
    elif kind == 7:
        lines += [
            f"{head}/smtp[{pid + 2}]: connect to mx.down.example[203.0.113.50]:25: Connection refused",
            f"{head}/smtp[{pid + 2}]: {qid}: to=<someone{n}@down.example>, relay=none, {delays}, dsn=4.4.1, "
            "status=deferred (connect to mx.down.example[203.0.113.50]:25: Connection refused)",
            f"{head}/qmgr[900]: {qid}: from=<{sender}>, status=expired, returned to sender",
            f"{head}/bounce[{pid + 3}]: {qid}: sender non-delivery notification: {_queue_id(n + 10_000_000)}",
        ]
    else:
        lines.append(
            f"{head}/smtp[{pid + 2}]: {qid}: to=<nosuch{n}@remote.example>, relay=mx.remote.example[203.0.113.9]:25, "
            f"{delays}, dsn=5.1.1, status=bounced (host mx.remote.example[203.0.113.9] said: 550 5.1.1 "
            f"<nosuch{n}@remote.example>: Recipient address rejected: User unknown (in reply to RCPT TO command))"
        )
    lines.append(f"{head}/qmgr[900]: {qid}: removed")
    return lines


def generate(seed: int = 1) -> Iterator[str]:
    """An endless log, one message after another, a few per second of log time."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test data
    n = 0
    while True:
        seconds = n // 4
        stamp = (
            f"Dec {1 + seconds // 86400 % 28:2d} {seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        )
        yield from message_lines(n, stamp, rng)
        n += 1


def write_log(path: Path, *, lines: int | None = None, megabytes: int | None = None) -> int:
    """Writes a generated log of this many lines or megabytes; returns the number of lines."""
    limit_bytes = (megabytes or 0) * 1024 * 1024
    written = size = 0
    batch: list[str] = []
    with open(path, "w", encoding="utf-8") as out:
        for line in generate():
            batch.append(line)
            size += len(line) + 1
            written += 1
            if len(batch) >= 10_000:
                out.write("\n".join(batch) + "\n")
                batch.clear()
            if (lines and written >= lines) or (limit_bytes and size >= limit_bytes):
                break
        if batch:
            out.write("\n".join(batch) + "\n")
    return written


def peak_rss_mb() -> float:
    """VmHWM: the most resident memory this process has used so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    arguments = argparse.ArgumentParser()
    arguments.add_argument("--lines", type=int, default=500_000)
    arguments.add_argument("--catch-up-mb", type=int, default=1024)
    options = arguments.parse_args()
    call_command("migrate", "--noinput", "-v", "0")
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "maillog"
        count = write_log(log, lines=options.lines)
        megabytes = log.stat().st_size / 1024 / 1024
        print(f"generated {count:,} lines ({megabytes:.0f} MB) in Postfix's format")

        started = time.perf_counter()
        with open(log, encoding="utf-8") as source:
            split = sum(1 for _ in source)
        baseline = time.perf_counter() - started

        started = time.perf_counter()
        reader = parser.Parser()
        records = 0
        with open(log, encoding="utf-8") as source:
            while chunk := source.readlines(1 << 20):
                records += len(reader.parse(chunk))
        parsing = time.perf_counter() - started
        print(f"baseline, read and split the file: {split / baseline:12,.0f} lines/s")
        print(f"parse into records:                {count / parsing:12,.0f} lines/s  ({records:,} records)")
        print(f"parse / baseline time:             {parsing / baseline:12.1f}x  (target: >= 50,000 lines/s)")
        log.unlink()

        if options.catch_up_mb:
            big = Path(scratch) / "maillog-big"
            count = write_log(big, megabytes=options.catch_up_mb)
            before = peak_rss_mb()
            print(f"\ncatch-up: {count:,} lines ({big.stat().st_size / 1024 / 1024:,.0f} MB); peak RSS {before:.0f} MB")
            Delivery.objects.filter(host="bench-trail").delete()
            follower = Follower(path=big, host="bench-trail")
            started = time.perf_counter()
            tenth, peak_at_tenth = big.stat().st_size // 10, 0.0
            while follower.step():
                if not peak_at_tenth and (follower.reader.position or Position(0, 0, 0, "", 0)).offset >= tenth:
                    peak_at_tenth = peak_rss_mb()
            took = time.perf_counter() - started
            follower.close()
            print(f"followed into the database: {follower.lines / took:,.0f} lines/s, {follower.records:,} records")
            print(f"  in {took:.0f} s; peak RSS after a tenth {peak_at_tenth:.0f} MB, after all {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
