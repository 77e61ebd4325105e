"""Postfix map publication: full publication vs bare postmap, change-to-live latency, bursts.

scripts/bench publication [--sizes 10000,100000,1000000] [--types lmdb,hash,cdb] [--changes 50]
                          [--burst 1000] [--repeat 3] [--owners 200]

For each table type and size (aliases in the run's own SQLite database spread evenly over
--owners owners who are in the private directory, maps in a map directory of the benchmark's
own, Postfix not reloaded):
  - full publication (render from the database + write + postmap + verify + rename) into an
    empty map directory, each followed by two baselines on copies of its sources: a bare
    `postmap` of the virtual table alone, and bare `postmap`s of every table the publication
    built (virtual and sender_login both have a line per alias), one after the other; medians
    over --repeat, the ratio to each baseline in wall time and in CPU time (the process and its
    children: what a shared machine's load distorts least), and the load average;
  - change-to-live latency through a real Celery worker: from the commit of a new alias to
    `postmap -q` answering with its owner, p50/p95 over --changes changes each made as soon as
    the one before is live (within the quiet spell: the worker coalesces), and p95 over as many
    lone changes (each after MAP_PUBLISH_QUIET_MS without one: published at once);
  - publications caused by a burst of --burst alias creations (one transaction each).
"""

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ["MAILADMIN_STATE_DIR"])
MAP_DIR = STATE_DIR / "bench-maps"
# Set before Django reads its settings, and inherited by the worker started below.
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "mailadmin.settings",
        "MAILADMIN_POSTFIX_MAP_DIR": str(MAP_DIR),
        "MAILADMIN_POSTFIX_RELOAD_COMMAND": "/bin/true",
        "MAILADMIN_MAIL_HOST": "bench",
        "MAILADMIN_LOG_LEVEL": "WARNING",
    }
)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts import directory  # noqa: E402
from aliases.models import Alias, Domain  # noqa: E402
from postfix import publication  # noqa: E402
from postfix.models import MapGeneration, MapPublication  # noqa: E402


def postmap_query(key: str) -> str:
    table = f"{settings.POSTFIX_MAP_TYPE}:{MAP_DIR / 'virtual'}"
    argv = [settings.POSTMAP_COMMAND, "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", key, table]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def fill(domain: Domain, owners: list[int], target: int) -> None:
    """Bring the alias count up to target with plain INSERTs (model instances would take minutes)."""
    have = Alias.objects.count()
    # Existing aliases were made long ago (recent rows are what an incremental render re-reads).
    now = (timezone.now() - timedelta(days=30)).isoformat()
    rows = [
        (owners[n % len(owners)], f"bulk{n:07d}", domain.pk, "custom", "", "", True, None, False, now, now)
        for n in range(have, target)
    ]
    columns = "owner_id, local_part, domain_id, kind, site, label, enabled, expires_at, vacation_replies, created_at"
    insert = f"INSERT INTO aliases_alias ({columns}, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(insert, rows)


class Full(NamedTuple):
    """One full publication and bare postmaps of its sources, wall and CPU seconds (CPU: this
    process and its children, which load on a shared machine distorts far less)."""

    publish: float
    publish_cpu: float
    bare: float  # postmap of the virtual table alone
    bare_cpu: float
    bare_all: float  # postmap of every table the publication built, one after the other
    bare_all_cpu: float


def cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def bare_postmap(sources: list[Path]) -> tuple[float, float]:
    started, started_cpu = time.perf_counter(), cpu()
    for source in sources:
        table = f"{settings.POSTFIX_MAP_TYPE}:{source}"
        subprocess.run([settings.POSTMAP_COMMAND, "-c", str(settings.POSTFIX_CONFIG_DIR), table], check=True)
    return time.perf_counter() - started, cpu() - started_cpu


def full_publication() -> Full:
    MapPublication.objects.filter(host="bench").delete()
    shutil.rmtree(MAP_DIR, ignore_errors=True)
    MAP_DIR.mkdir(parents=True)
    started, started_cpu = time.perf_counter(), cpu()
    outcome = publication.publish(force=True, coalesce=False)
    elapsed, elapsed_cpu = time.perf_counter() - started, cpu() - started_cpu
    assert outcome.status == "published", outcome.error
    with tempfile.TemporaryDirectory(dir=STATE_DIR) as scratch:
        sources = [Path(scratch) / name for name in outcome.changed]
        for source in sources:
            shutil.copyfile(MAP_DIR / source.name, source)
        bare, bare_cpu = bare_postmap([Path(scratch) / "virtual"])
        bare_all, bare_all_cpu = bare_postmap(sources)
    return Full(elapsed, elapsed_cpu, bare, bare_cpu, bare_all, bare_all_cpu)


def create_alias(owner_id: int, domain: Domain, local: str) -> None:
    with transaction.atomic():
        Alias.objects.create(owner_id=owner_id, local_part=local, domain=domain)
        publication.request_publication("benchmark", keys=[f"{local}@{domain.name}"])  # as aliases/services.py


def latencies(domain: Domain, owner_id: int, email: str, size: int, changes: int, lone: bool = False) -> list[float]:
    """Each change made as soon as the one before is live (the worker sees changes coming one
    after another and coalesces), or, lone, after a quiet spell (a change alone: at once)."""
    found = []
    for n in range(changes):
        if lone:
            time.sleep(settings.MAP_PUBLISH_QUIET_MS / 1000 + 0.05)
        local = f"live{size}{settings.POSTFIX_MAP_TYPE}x{n}x{changes}{'lone' if lone else ''}"
        started = time.perf_counter()
        create_alias(owner_id, domain, local)
        while postmap_query(f"{local}@{domain.name}") != email:
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"{local} not live after 60 s")
            time.sleep(0.005)
        found.append(time.perf_counter() - started)
    return found


def settle(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = MapPublication.objects.filter(host="bench").first()
        if state and state.published_generation >= MapGeneration.objects.get().requested:
            return
        time.sleep(0.05)
    raise RuntimeError("the worker did not catch up")


def burst(domain: Domain, owner_id: int, size: int, count: int) -> tuple[int, float, int]:
    settle()
    before = MapPublication.objects.get(host="bench").publications
    started = time.perf_counter()
    for n in range(count):
        create_alias(owner_id, domain, f"burst{size}{settings.POSTFIX_MAP_TYPE}x{n}")
    created = time.perf_counter() - started
    settle()
    time.sleep(1)  # a late wake-up would show here
    keys = "".join(f"burst{size}{settings.POSTFIX_MAP_TYPE}x{n}@{domain.name}\n" for n in range(count))
    table = f"{settings.POSTFIX_MAP_TYPE}:{MAP_DIR / 'virtual'}"
    argv = [settings.POSTMAP_COMMAND, "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", "-", table]
    found = subprocess.run(argv, input=keys, capture_output=True, text=True).stdout.count("\n")
    return MapPublication.objects.get(host="bench").publications - before, created, count - found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def start_worker() -> subprocess.Popen[bytes]:
    log = open(STATE_DIR / "bench-worker.log", "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mailadmin", "worker", "-P", "threads", "-c", "4", "-l", "WARNING",
         "-Q", "celery,maps.bench", "--without-mingle", "--without-gossip"],
        cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--types", default="lmdb,hash,cdb")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--owners", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    call_command("migrate", "--noinput", verbosity=0)
    domain, _ = Domain.objects.get_or_create(name="bench.example.org", defaults={"is_alias_domain": True})
    # Alias targets come from the directory: the owners are people in it.
    known = {entry.uid for entry in directory.mail_entries()}
    for n in range(args.owners):
        if f"owner{n}" not in known:
            directory.create_user(
                uid=f"owner{n}", cn=f"Owner {n}", sn="Owner", mail=f"owner{n}@example.org", password=None
            )
    wanted = [User(username=f"owner{n}", email=f"owner{n}@example.org") for n in range(args.owners)]
    User.objects.bulk_create(wanted, ignore_conflicts=True)
    owners = list(User.objects.filter(username__in=[user.username for user in wanted]).order_by("pk"))
    owner_ids = [owner.pk for owner in owners]
    MAP_DIR.mkdir(parents=True, exist_ok=True)
    print(f"aliases spread over {len(owners)} owners, one alias domain; load average {os.getloadavg()[0]:.1f}")
    print("publish: full publication, median of --repeat; bare: postmap of the virtual table alone; bare all:")
    print("postmap of every table the publication built, one after the other; cpu: that process and its children")
    print(f"{'type':>5} {'aliases':>9} {'publish s':>9} {'bare s':>7} {'ratio':>6} {'bare all':>8} {'ratio':>6} "
          f"{'cpu ratio':>9} {'cpu all':>7} {'load':>5} {'live p50':>9} {'live p95':>9} {'lone p95':>9} "
          f"{'burst pubs':>10} {'burst s':>8} {'lost':>5}")  # fmt: skip
    for size in sizes:
        fill(domain, owner_ids, size)
        for table_type in args.types.split(","):
            # In this process and in the worker started below.
            settings.POSTFIX_MAP_TYPE = table_type
            os.environ["MAILADMIN_POSTFIX_MAP_TYPE"] = table_type
            # Before the worker starts: nothing else publishes. Each publication is followed by
            # its bare postmaps, so that a change in the machine's load falls on both.
            runs = [full_publication() for _ in range(args.repeat)]
            full = Full(*(statistics.median(run[n] for run in runs) for n in range(len(Full._fields))))
            load = os.getloadavg()[0]
            worker = start_worker()
            try:
                latencies(domain, owners[0].pk, owners[0].email, size, 1)  # the worker starts up
                live = latencies(domain, owners[0].pk, owners[0].email, size, args.changes)
                lone = latencies(domain, owners[0].pk, owners[0].email, size, args.changes, lone=True)
                publications, burst_seconds, lost = burst(domain, owners[1].pk, size, args.burst)
            finally:
                stop_worker(worker)
            print(
                f"{table_type:>5} {size:>9} {full.publish:>9.3f} {full.bare:>7.3f} {full.publish / full.bare:>6.2f} "
                f"{full.bare_all:>8.3f} {full.publish / full.bare_all:>6.2f} "
                f"{full.publish_cpu / full.bare_cpu:>9.2f} {full.publish_cpu / full.bare_all_cpu:>7.2f} {load:>5.1f} "
                f"{percentile(live, 0.5):>9.3f} {percentile(live, 0.95):>9.3f} {percentile(lone, 0.95):>9.3f} "
                f"{publications:>10} {burst_seconds:>8.1f} {lost:>5}",
                flush=True,
            )
    print(
        "targets: live p95 <= 0.150 s lmdb at 1M, <= 1 s hash at 1M, <= 0.100 s lmdb at 100k; publish <= 1.5x "
        "postmap at 1M, <= 2x at 100k, <= 0.100 s at 10k; burst <= 5 publications, none lost"
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
