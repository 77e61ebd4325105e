"""Vacation responder throughput over loopback, beside Postfix's own smtp-sink.

scripts/bench responder [--messages N]

Measures, in one run and with the same asyncio client (a new connection per message):
  - smtp-sink (Postfix's test server) as the ceiling of the loopback and the client;
  - the responder (manage.py run_responder, LMTP) on copies that get no reply (bulk mail);
  - the responder on copies that each get a reply, handed to the private Postfix;
and, in this process, the cost of one decision (parse + database read + rules) and of the
parts of one reply: building it, recording it (one committed write) and handing it to the
private Postfix (MAIL/RCPT/DATA pipelined, content, end of data), one at a time.
"""

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from localservices.process import free_port, wait_for_port  # noqa: E402
from mailadmin.outgoing_mail import close_session  # noqa: E402
from outofoffice.evaluation import evaluate, recipient_for  # noqa: E402
from outofoffice.models import ReplyLog, VacationReply  # noqa: E402
from outofoffice.replies import ReplyRecord, build_reply, hand_over  # noqa: E402
from outofoffice.routing import routing_address  # noqa: E402
from outofoffice.rules import decide, parse_incoming  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
SMTP_SINK = "/usr/sbin/smtp-sink"
MAILBOX = "bench@example.org"

MessageFor = Callable[[int], tuple[str, bytes]]


def message(sender: str, *extra: str) -> bytes:
    lines = [f"From: {sender}", f"To: {MAILBOX}", "Subject: benchmark", f"Message-ID: <{sender}>", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n" + "Some text of the message.\r\n" * 40).encode()


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return line


async def _expect(reader: asyncio.StreamReader, code: str) -> None:
    line = await _reply(reader)
    if not line.startswith(code.encode()):
        raise RuntimeError(f"expected {code}, got {line!r}")


class Session:
    """One SMTP or LMTP connection; `send` runs one mail transaction on it."""

    def __init__(self, port: int, lmtp: bool) -> None:
        self.port, self.lmtp = port, lmtp
        self.deferred = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        await _expect(self.reader, "220")
        self.writer.write(b"LHLO bench\r\n" if self.lmtp else b"EHLO bench\r\n")
        await _expect(self.reader, "250")

    async def send(self, sender: str, recipient: str, raw: bytes) -> None:
        for command, code in ((f"MAIL FROM:<{sender}>", "250"), (f"RCPT TO:<{recipient}>", "250"), ("DATA", "354")):
            self.writer.write(command.encode() + b"\r\n")
            await _expect(self.reader, code)
        self.writer.write(raw + b".\r\n")
        status = await _reply(self.reader)
        if status.startswith(b"4"):
            self.deferred += 1  # Postfix would retry this copy later
        elif not status.startswith(b"250"):
            raise RuntimeError(f"refused: {status!r}")

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await _expect(self.reader, "221")
        self.writer.close()
        await self.writer.wait_closed()


async def run_load(
    port: int, lmtp: bool, count: int, concurrency: int, message_for: MessageFor, reuse: bool = False
) -> tuple[float, int]:
    """(messages per second, deferred) for `count` messages over `concurrency` parallel clients,
    with a new connection per message, or one connection per client (as Postfix's LMTP
    client does with its connection cache)."""
    numbers = iter(range(count))
    recipient = routing_address(MAILBOX)
    sessions: list[Session] = []

    async def client() -> None:
        session = Session(port, lmtp)
        sessions.append(session)
        if reuse:
            await session.open()
        for n in numbers:
            sender, raw = message_for(n)
            if not reuse:
                await session.open()
            await session.send(sender, recipient, raw)
            if not reuse:
                await session.close()
        if reuse:
            await session.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return count / (time.perf_counter() - started), sum(session.deferred for session in sessions)


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def start_smtp_sink(port: int) -> subprocess.Popen[bytes]:
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []  # smtp-sink refuses to run as root
    process = subprocess.Popen([SMTP_SINK, *as_user, f"127.0.0.1:{port}", "256"], stdout=subprocess.DEVNULL)
    wait_for_port(port, "smtp-sink")
    return process


def start_responder(port: int) -> subprocess.Popen[bytes]:
    # As in production: DEBUG off (Django would otherwise log and re-quote every SQL query).
    env = {
        **os.environ,
        "MAILADMIN_LOG_LEVEL": "WARNING",
        "MAILADMIN_DEBUG": "0",
        "MAILADMIN_SECRET_KEY": secrets.token_hex(32),
    }
    argv = [sys.executable, "manage.py", "run_responder", "--port", str(port)]
    process = subprocess.Popen(argv, cwd=BASE_DIR, env=env)
    wait_for_port(port, "responder", timeout=30)
    return process


def cost_per_decision(count: int) -> tuple[float, float]:
    """(µs for parse + database read + rules, µs for the rules alone) per decision."""
    now = timezone.now()
    raws = [message(f"cost{n}@remote.example") for n in range(count)]
    started = time.perf_counter()
    for n, raw in enumerate(raws):
        evaluate(MAILBOX, parse_incoming(f"cost{n}@remote.example", raw), now)
    full = (time.perf_counter() - started) / count * 1e6
    vacation = VacationReply.objects.get(address=MAILBOX)
    recipient = recipient_for(vacation, "cost@remote.example")
    incoming = parse_incoming("cost@remote.example", raws[0])
    started = time.perf_counter()
    for _ in range(count):
        decide(incoming, recipient, now)
    rules = (time.perf_counter() - started) / count * 1e6
    return full, rules


def _per_call(calls: list[Callable[[], object]]) -> float:
    started = time.perf_counter()
    for call in calls:
        call()
    return (time.perf_counter() - started) / len(calls) * 1e6


def cost_per_reply(count: int) -> tuple[float, float, float]:
    """(µs to build, µs to record, µs to hand over) one reply, one at a time in this process."""
    vacation = VacationReply.objects.get(address=MAILBOX)
    now = timezone.now()
    senders = [f"cost{n}@remote.example" for n in range(count)]
    incomings = [parse_incoming(sender, message(sender)) for sender in senders]
    build = _per_call([partial(build_reply, vacation, incoming, False, now) for incoming in incomings])
    record = _per_call([ReplyRecord(vacation, sender, now, None).write for sender in senders])
    content = build_reply(vacation, incomings[0], False, now)
    hand_over(content, senders[0], lambda: None)  # opens the session
    handed = _per_call([partial(hand_over, content, sender, lambda: None) for sender in senders])
    close_session()
    return build, record, handed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per measurement (default 2000)")
    args = parser.parse_args()
    if not Path(SMTP_SINK).exists() or shutil.which(SMTP_SINK) is None:
        raise SystemExit(f"{SMTP_SINK} is missing (Debian package postfix)")
    count = args.messages
    load_before = _load()

    call_command("migrate", "--noinput", verbosity=0)
    now = timezone.now()
    VacationReply.objects.update_or_create(
        address=MAILBOX,
        defaults={
            "uid": "bench",
            "enabled": True,
            "starts_at": now - timedelta(hours=1),
            "ends_at": now + timedelta(days=1),
            "subject": "Away",
            "body": "I am away this week.",
        },
    )
    # The private Postfix relays the replies on to the "outside world": let smtp-sink take them.
    outside = start_smtp_sink(settings.OUTSIDE_SMTP_PORT)
    sink_port = free_port()
    sink = start_smtp_sink(sink_port)
    responder_port = free_port()
    responder = start_responder(responder_port)
    results: list[tuple[str, str, int, float, int]] = []

    def measure(name: str, port: int, lmtp: bool, concurrency: int, message_for: MessageFor, reuse: bool) -> None:
        rate, deferred = asyncio.run(run_load(port, lmtp, count, concurrency, message_for, reuse))
        results.append((name, "reused" if reuse else "new", concurrency, rate, deferred))

    def bulk(n: int) -> tuple[str, bytes]:
        return f"s{n}@remote.example", message(f"s{n}@remote.example", "Precedence: bulk")

    try:
        asyncio.run(run_load(sink_port, False, 100, 10, bulk))
        asyncio.run(run_load(responder_port, True, 100, 10, bulk))
        for reuse in (False, True):
            for concurrency in (1, 10):
                measure("smtp-sink (Postfix's test server)", sink_port, False, concurrency, bulk, reuse)
                measure("responder, no reply (bulk mail)", responder_port, True, concurrency, bulk, reuse)
                tag = f"{int(reuse)}c{concurrency}"

                def replied(n: int, tag: str = tag) -> tuple[str, bytes]:
                    return f"{tag}r{n}@remote.example", message(f"{tag}r{n}@remote.example")

                measure("responder, reply to each (via Postfix)", responder_port, True, concurrency, replied, reuse)
        sent = ReplyLog.objects.count()
        build, record, handed = cost_per_reply(min(count, 500))
    finally:
        for process in (responder, sink, outside):
            process.terminate()
            process.wait(10)
    full, rules = cost_per_decision(min(count, 2000))
    load_after = _load()

    print(f"\nVacation responder over loopback, {count} messages per row; load average {load_before} -> {load_after}")
    print(f"{'server':<40} {'connection':>10} {'concurrency':>11} {'msg/s':>7} {'deferred':>8}")
    for name, connection, concurrency, rate, deferred in results:
        print(f"{name:<40} {connection:>10} {concurrency:>11} {rate:>7.0f} {deferred:>8}")
    print(f"replies recorded: {sent} (one per distinct sender)")
    print(f"cost per decision: {full:.0f} µs (parse + SQL read + rules), {rules:.1f} µs (rules alone)")
    print(f"cost per reply: build {build:.0f} µs, record {record:.0f} µs, hand over to Postfix {handed:.0f} µs")


if __name__ == "__main__":
    main()
