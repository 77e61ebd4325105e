"""Policy service throughput and latency over loopback, beside a bare echo server and Postfix.

scripts/bench policy [--requests N] [--aliases N] [--messages N]

In one run, with the same asyncio client (Postfix-like: one connection per client, one
request at a time, the next when the answer is in):
  - a bare policy server on the same socket machinery (policy/protocol.py) that answers
    DUNNO to everything: the ceiling of the loopback, the framing and the client;
  - the real service (manage.py run_policy) over --aliases aliases and their blocks;
  - the same service answering submissions ("outbound": the outbound limits count each one in
    Redis first);
at 1, 10 and 20 concurrent clients: decisions/s, p50/p95/p99 latency. Then, through the
private Postfix (which asks the policy service at RCPT): its intake rate with 10 concurrent
SMTP clients, and the latency of one whole SMTP transaction with the service on and off.
"""

import argparse
import asyncio
import os
import random
import smtplib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts import directory  # noqa: E402
from activity.models import BlockGeneration, SenderBlock  # noqa: E402
from aliases.models import Alias, Domain  # noqa: E402
from localservices.process import free_port, wait_for_port, wait_for_port_closed  # noqa: E402
from postfix import publication  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
ECHO = (
    "import asyncio, sys; from policy.protocol import serve; "
    "asyncio.run(serve('127.0.0.1', int(sys.argv[1]), lambda a: 'DUNNO'))"
)
ROUNDS, TRANSACTIONS = 4, 50
RNG = random.Random(7)  # noqa: S311 -- the same request mix in every run, not a secret


def seed(aliases: int) -> list[str]:
    directory.create_user(uid="benchpol", cn="Bench", sn="Bench", mail="benchpol@example.org", password=None)
    owner, _ = User.objects.get_or_create(username="benchpol", defaults={"email": "benchpol@example.org"})
    domain, _ = Domain.objects.get_or_create(name="bench-alias.example.org", defaults={"is_alias_domain": True})
    Alias.objects.bulk_create(
        Alias(owner=owner, local_part=f"site{i}", domain=domain, kind="site", site=f"site{i}.example")
        for i in range(aliases)
    )
    made = list(Alias.objects.filter(owner=owner))
    SenderBlock.objects.bulk_create(
        SenderBlock(scope="alias", owner=owner, alias=alias, sender=f"pest{i}@nuisance.example")
        for i, alias in enumerate(made)
    )
    SenderBlock.objects.create(scope="account", owner=owner, sender="spam.example", is_domain=True)
    SenderBlock.objects.create(scope="organisation", sender="junk.example", is_domain=True)
    BlockGeneration.objects.update_or_create(pk=1, defaults={"changes": 1})
    publication.request_publication("benchmark")
    publication.publish(coalesce=False, force=True)
    return [alias.address for alias in made]


def request(recipient: str, sender: str) -> bytes:
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        "client_address=192.0.2.10\nclient_name=mx.outside.example\nhelo_name=mx.outside.example\n"
        f"queue_id=\nsender={sender}\nrecipient={recipient}\nrecipient_count=0\nsize=1234\n"
        "instance=1a2b.5f3c.1\nencryption_protocol=\nsasl_username=\nccert_subject=\n\n"
    ).encode()


def submission(login: str, message: int) -> bytes:
    """A request as Postfix sends it for mail a local person submits: the outbound limits count it
    (one Redis round trip) before the inbound checks."""
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        "client_address=127.0.0.1\nclient_name=localhost\nhelo_name=laptop\n"
        f"queue_id=\nsender={login}@example.org\nrecipient=friend{message}@remote.example\nrecipient_count=0\n"
        f"size=1234\ninstance=out.{login}.{message}\nencryption_protocol=TLSv1.3\nsasl_username={login}\n"
        "ccert_subject=\n\n"
    ).encode()


async def client(port: int, requests: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for data in requests:
        start = time.perf_counter()
        writer.write(data)
        await writer.drain()
        await reader.readuntil(b"\n\n")
        latencies.append(time.perf_counter() - start)
    writer.close()


async def load(port: int, concurrency: int, total: int, mix: list[bytes]) -> tuple[float, list[float]]:
    per_client = total // concurrency
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(client(port, RNG.sample(mix, per_client), latencies) for _ in range(concurrency)))
    return per_client * concurrency / (time.perf_counter() - start), latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc): what a decision costs the server,
    whatever else the machine is doing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, cwd=BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, argv[-1])
    return process


def stop(process: subprocess.Popen[bytes], port: int) -> None:
    process.terminate()
    process.wait(30)
    wait_for_port_closed(port)


def postconf(*args: str) -> str:
    command = ["/usr/sbin/postconf", "-c", str(settings.POSTFIX_CONFIG_DIR), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@contextmanager
def without_policy_check() -> Iterator[None]:
    """The private Postfix with the policy check taken out of smtpd_recipient_restrictions."""
    original = postconf("-h", "smtpd_recipient_restrictions").strip()
    entries = [e.strip() for e in original.split(",") if "check_policy_service" not in e]
    reload = ["/usr/sbin/postfix", "-c", str(settings.POSTFIX_CONFIG_DIR), "reload"]
    postconf("-e", f"smtpd_recipient_restrictions={', '.join(entries)}")
    subprocess.run(reload, check=True, capture_output=True)
    time.sleep(1.0)  # smtpd processes started before the reload finish their connections
    try:
        yield
    finally:
        postconf("-e", f"smtpd_recipient_restrictions={original}")
        subprocess.run(reload, check=True, capture_output=True)
        time.sleep(1.0)


def smtp_transaction(recipient: str) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=30) as smtp:
        smtp.sendmail("friend@fine.example", [recipient], b"Subject: bench\r\n\r\nhello\r\n")
    return time.perf_counter() - start


async def intake(addresses: list[str], messages: int, concurrency: int = 10) -> float:
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()

    async def worker(n: int) -> None:
        for _ in range(n):
            await loop.run_in_executor(None, smtp_transaction, RNG.choice(addresses))

    await asyncio.gather(*(worker(messages // concurrency) for _ in range(concurrency)))
    return (messages // concurrency) * concurrency / (time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--aliases", type=int, default=10000)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args()
    call_command("migrate", "--noinput", verbosity=0)
    addresses = seed(args.aliases)
    # A Postfix-like mix: mostly mail from each alias's own site, a few from elsewhere (leak
    # flags), some blocked, some not ours.
    picks = [RNG.randrange(len(addresses)) for _ in range(2000)]
    mix = [request(f"site{i}@bench-alias.example.org", f"news@mail.site{i}.example") for i in picks[:1900]]
    mix += [request(f"site{i}@bench-alias.example.org", "friend@fine.example") for i in picks[1900:]]
    mix += [request(f"site{i}@bench-alias.example.org", f"pest{i}@nuisance.example") for i in range(300)]
    mix += [request("someone@elsewhere.example", "x@mx.junk.example") for _ in range(200)]
    RNG.shuffle(mix)
    mix = (mix * (args.requests // len(mix) + 1))[: args.requests]
    # Submissions by 2,000 logins, each well under its limits (a new message per request).
    outbound = [submission(f"sender{n % 2000}", n) for n in range(args.requests)]

    echo_port, policy_port = free_port(), settings.POLICY_PORT
    python = sys.executable
    print(f"policy decisions over loopback, {args.requests} requests per row, {args.aliases} aliases and blocks")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'server':<10} {'clients':>7} {'decisions/s':>12} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'vs echo':>8} {'server CPU us/decision':>23}"
    )
    echo = start([python, "-c", ECHO, str(echo_port)], echo_port)
    serve_policy = [python, "manage.py", "run_policy", "--port", str(policy_port)]
    real = start(serve_policy, policy_port)
    time.sleep(1.0)  # the first snapshot
    rates: dict[tuple[str, int], float] = {}
    try:
        for concurrency in (1, 10, 20):
            rows = (
                ("echo", echo_port, echo, mix),
                ("policy", policy_port, real, mix),
                ("outbound", policy_port, real, outbound),
            )
            for name, port, process, requests in rows:
                cpu = cpu_seconds(process.pid)
                rate, latencies = asyncio.run(load(port, concurrency, args.requests, requests))
                cost = (cpu_seconds(process.pid) - cpu) / len(latencies) * 1e6
                rates[name, concurrency] = rate
                ratio = f"{rate / rates['echo', concurrency]:.2f}" if name != "echo" else ""
                print(
                    f"{name:<10} {concurrency:>7} {rate:>12,.0f} {percentile(latencies, 50):>7.2f} "
                    f"{percentile(latencies, 95):>7.2f} {percentile(latencies, 99):>7.2f} {ratio:>8} {cost:>23.0f}"
                )
        accepted = asyncio.run(intake(addresses, args.messages))
        # One transaction at a time, the service on and off in alternating rounds (so a change in
        # the machine's load falls on both alike).
        with_service: list[float] = []
        down: list[float] = []
        unchecked: list[float] = []
        for _ in range(ROUNDS):
            with_service += [smtp_transaction(RNG.choice(addresses)) for _ in range(TRANSACTIONS)]
            with without_policy_check():
                unchecked += [smtp_transaction(RNG.choice(addresses)) for _ in range(TRANSACTIONS)]
            stop(real, policy_port)
            down += [smtp_transaction(RNG.choice(addresses)) for _ in range(TRANSACTIONS)]
            real = start(serve_policy, policy_port)
    finally:
        stop(echo, echo_port)
        stop(real, policy_port)
    print(f"\nprivate Postfix intake, 10 SMTP clients: {accepted:,.0f} msg/s")
    print(f"policy decisions at 10 clients / Postfix intake: {rates['policy', 10] / accepted:.1f}x (target >= 4x)")
    print(
        f"outbound decisions (limits on) at 10 clients / Postfix intake: {rates['outbound', 10] / accepted:.1f}x "
        "(target >= 4x)"
    )
    on, off = statistics.median(with_service) * 1000, statistics.median(unchecked) * 1000
    print(
        f"one SMTP transaction (median of {len(with_service)} each, {ROUNDS} alternating rounds): "
        f"no policy check {off:.2f} ms, service on {on:.2f} ms ({on / off - 1:+.1%}; target <= 10%), "
        f"service down {statistics.median(down) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
