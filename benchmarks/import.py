"""CSV import: how fast rows go in through the import (forms, per-row savepoints, outcomes,
the Celery worker), against the same rows written bare and through the service function, in
the same run.

scripts/bench import [--rows 10000] [--users 10000] [--owners 100]

Aliases: --rows aliases for --owners directory users, on one alias domain. Two baselines: bare
INSERTs of the same rows (one transaction per 50, as the import's batches; no checks, no audit
event, no publication request) and aliases.services.create_alias called in a loop (no forms, no
directory check, no outcomes). Then the same rows go through a dry run and an import, each run
by a real Celery worker (solo pool) from the job's id, timed from queueing to "done". The map
publications the rows request stay queued (the worker is not this host's); the import's
requests are counted and must name every imported address.
Users: --users new directory entries. Two baselines: bare LDAP adds of the same entries (one
connection, the {CRAM-MD5} value computed before) and accounts.administration.create_mail_user
in a loop; then a dry run and an import through the worker.

Every line prints the seconds, rows/s, the CPU seconds the worker (or this process, for a
baseline) and slapd spent on it, and the load average: the wall-clock figures move with the
machine's load, the CPU figures much less. Ratios are the import's over a baseline's, both
measured in this run.
"""

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from accounts import administration, directory  # noqa: E402
from accounts.cram_md5 import cram_md5_hash  # noqa: E402
from aliases.models import Alias, AliasTombstone, Domain  # noqa: E402
from aliases.services import create_alias  # noqa: E402
from benchmarks.pages import cpu_seconds  # noqa: E402
from benchmarks.publication import stop_worker  # noqa: E402
from bulk import csvfiles, tasks  # noqa: E402
from bulk.models import ImportJob  # noqa: E402
from localservices.process import read_pid  # noqa: E402
from mfa import sealing  # noqa: E402
from postfix.models import PublicationRequest  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
DOMAIN = "bench-import.example.org"
BATCH = 50


@dataclass
class Run:
    seconds: float
    cpu: float  # the worker's, or this process's for a baseline
    slapd_cpu: float


def start_worker() -> subprocess.Popen[bytes]:
    log = open(Path(settings.STATE_DIR) / "bench-import-worker.log", "a")  # noqa: SIM115 -- the worker's
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mailadmin", "worker", "-P", "solo", "-l", "WARNING",
         "--without-mingle", "--without-gossip"],
        cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # Not this host's map queue, and the rows' publication requests go to a queue nobody
        # consumes here: publishing meanwhile would take the CPU from both sides alike
        # (scripts/bench publication measures publishing).
        env={**os.environ, "MAILADMIN_MAIL_HOST": "bench-import-no-maps", "MAILADMIN_MAP_HOSTS": "bench-import-queued"},
    )  # fmt: skip


def slapd_pid() -> int:
    pid = read_pid(Path(settings.STATE_DIR) / "slapd" / "slapd.pid")
    assert pid is not None, "the private slapd is not running"
    return pid


def timed(run: Callable[[], object]) -> Run:
    slapd = cpu_seconds([slapd_pid()])
    start, cpu = time.perf_counter(), time.process_time()
    run()
    return Run(time.perf_counter() - start, time.process_time() - cpu, cpu_seconds([slapd_pid()]) - slapd)


def through_worker(
    worker: int, admin: User, kind: str, text: str, rows: int, source: ImportJob | None
) -> tuple[ImportJob, Run]:
    job = ImportJob.objects.create(
        kind=kind, dry_run=source is None, created_by=admin, source=source,
        filename="bench.csv", sealed_content=sealing.seal(text), total_rows=rows,
    )  # fmt: skip
    slapd, cpu = cpu_seconds([slapd_pid()]), cpu_seconds([worker])
    start = time.perf_counter()
    tasks.run_import.delay(job.pk)
    shown = -1
    while True:
        job.refresh_from_db()
        if job.state == ImportJob.State.DONE:
            break
        if job.state == ImportJob.State.RUNNING and job.heartbeat_at is None:
            # run_import lets go of a job that failed: see the worker's log.
            raise SystemExit(
                f"import {job.pk} failed in the worker: {Path(settings.STATE_DIR)}/bench-import-worker.log"
            )
        if job.processed_rows // 2000 != shown // 2000:
            shown = job.processed_rows
            print(f"    … {job.processed_rows} of {rows} rows", flush=True)
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    return job, Run(seconds, cpu_seconds([worker]) - cpu, cpu_seconds([slapd_pid()]) - slapd)


def dry_run_and_import(worker: int, admin: User, kind: str, text: str, rows: int, baselines: list[Run]) -> Run:
    dry, run = through_worker(worker, admin, kind, text, rows, None)
    report("dry run (worker)", rows, run, baselines)
    print(f"    outcomes: {counts(dry)}")
    job, run = through_worker(worker, admin, kind, text, rows, dry)
    report("import (worker)", rows, run, baselines)
    print(f"    outcomes: {counts(job)}")
    # The target: 10,000 rows imported in under a minute (scaled for other --rows/--users).
    allowed = 60 * rows / 10_000
    verdict = "met" if run.seconds < allowed else "NOT met"
    print(f"    target ({rows} rows in under {allowed:.0f} s): {verdict} at load {os.getloadavg()[0]:.1f}")
    return run


def bare_again(label: str, rows: int, bare: Run, again: Run, imported: Run) -> None:
    """Baseline 1 measured again after the import: the machine's load moves between the two, so
    the import is also compared with their mean."""
    report(f"{label} again", rows, again)
    seconds, cpu = (bare.seconds + again.seconds) / 2, (bare.cpu + again.cpu) / 2
    print(f"    import over the mean of baseline 1 before and after: {imported.seconds / seconds:.2f}× the time, "
          f"{imported.cpu / cpu:.2f}× the CPU")  # fmt: skip


def report(label: str, rows: int, run: Run, baselines: list[Run] | None = None) -> None:
    ratios = "".join(
        f"  {run.seconds / base.seconds:5.2f}× / {run.cpu / base.cpu:5.2f}× CPU of baseline {n}"
        for n, base in enumerate(baselines or [], 1)
    )
    print(
        f"  {label:<38} {run.seconds:7.2f} s {rows / run.seconds:6.0f} rows/s"
        f"  CPU {1000 * run.cpu / rows:5.2f} ms/row, slapd {1000 * run.slapd_cpu / rows:5.2f} ms/row"
        f"  load {os.getloadavg()[0]:4.1f}{ratios}",
        flush=True,
    )


def counts(job: ImportJob) -> str:
    return ", ".join(
        f"{outcome} {n}" for outcome, n in job.rows.values_list("outcome").annotate(n=django.db.models.Count("id"))
    )


def aliases(worker: int, admin: User, rows: int, owners: int) -> None:
    domain, _ = Domain.objects.get_or_create(name=DOMAIN, defaults={"is_alias_domain": True})
    uids = [f"bimp{n:04d}" for n in range(owners)]
    for uid in uids:
        if directory.get_user(uid) is None:
            directory.create_user(uid, f"Bench {uid}", uid, f"{uid}@{settings.MAIL_DOMAIN}", None)
    people = {
        uid: User.objects.get_or_create(username=uid, defaults={"email": f"{uid}@{settings.MAIL_DOMAIN}"})[0]
        for uid in uids
    }
    table = [(f"imp{n:06d}", uids[n % owners]) for n in range(rows)]

    def clear() -> None:
        Alias.objects.filter(domain=domain).delete()
        AliasTombstone.objects.filter(address__endswith="@" + DOMAIN).delete()

    def bare_inserts() -> None:
        for start in range(0, rows, BATCH):
            with transaction.atomic():
                for local, uid in table[start : start + BATCH]:
                    Alias.objects.create(owner=people[uid], local_part=local, domain=domain, kind="custom")

    clear()
    print(f"\naliases: {rows} rows for {owners} owners")
    bare = timed(bare_inserts)
    report("baseline 1: bare INSERTs", rows, bare)
    clear()
    service = timed(
        lambda: [
            create_alias(None, people[uid], local_part=local, domain=domain, kind="custom", actor=admin)
            for local, uid in table
        ]
    )
    report("baseline 2: create_alias in a loop", rows, service)
    clear()
    text = "".join(csvfiles.csv_lines(("address", "owner"), ((f"{local}@{DOMAIN}", uid) for local, uid in table)))
    requests_before = PublicationRequest.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    imported = dry_run_and_import(worker, admin, "aliases", text, rows, [bare, service])
    assert Alias.objects.filter(domain=domain).count() == rows
    requested = PublicationRequest.objects.filter(pk__gt=requests_before)
    named = {key for keys in requested.values_list("keys", flat=True) for key in keys.split("\n")}
    missing = {f"{local}@{DOMAIN}" for local, _ in table} - named
    print(f"    map publication requests: {requested.count()}, naming every imported address: {not missing}")
    assert not missing, f"{len(missing)} imported addresses named by no publication request"
    clear()
    bare_again("baseline 1: bare INSERTs", rows, bare, timed(bare_inserts), imported)
    clear()


def users(worker: int, admin: User, rows: int) -> None:
    uids = [f"bnew{n:06d}" for n in range(rows)]
    hashed = cram_md5_hash("Bench pass 12345")

    def clear() -> None:
        with directory.one_connection():
            for uid in uids:
                directory.delete_user(uid)

    def bare_adds() -> None:
        with directory.one_connection():
            for uid in uids:
                name = f"Bench Person {uid}"
                directory.create_user(
                    uid, name, uid, f"{uid}@{settings.MAIL_DOMAIN}", None, "Bench Person", hashed_password=hashed
                )

    print(f"\nusers: {rows} new directory entries")
    clear()
    bare = timed(bare_adds)
    report("baseline 1: bare LDAP adds", rows, bare)
    clear()
    service = timed(
        lambda: [
            administration.create_mail_user(
                uid, f"Bench Person {uid}", f"{uid}@{settings.MAIL_DOMAIN}", "Bench pass 12345", None, actor=admin
            )
            for uid in uids
        ]
    )
    report("baseline 2: create_mail_user in a loop", rows, service)
    clear()
    text = "".join(
        csvfiles.csv_lines(
            ("uid", "name", "mail"), ((uid, f"Bench Person {uid}", f"{uid}@{settings.MAIL_DOMAIN}") for uid in uids)
        )
    )
    imported = dry_run_and_import(worker, admin, "users", text, rows, [bare, service])
    clear()
    bare_again("baseline 1: bare LDAP adds", rows, bare, timed(bare_adds), imported)
    clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=100)
    args = parser.parse_args()
    call_command("migrate", "--noinput", verbosity=0)
    admin, _ = User.objects.get_or_create(username="benchimportadmin")
    print(f"load average {os.getloadavg()[0]:.1f} at the start ({os.cpu_count()} cores)")
    worker = start_worker()
    try:
        if args.rows:
            aliases(worker.pid, admin, args.rows, args.owners)
        if args.users:
            users(worker.pid, admin, args.users)
    finally:
        stop_worker(worker)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
