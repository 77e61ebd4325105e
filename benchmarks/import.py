"""CSV import: how fast rows go in through the import (forms, per-row transactions, outcomes,
the Celery worker), against a plain loop of the service function creating the same rows.

scripts/bench import [--rows 10000] [--users 10000] [--owners 100]

Aliases: --rows aliases for --owners directory users, on one alias domain. The baseline is
aliases.services.create_alias called in a loop for the same rows (no forms, no directory
check, no outcomes); then the rows are removed and the same rows go through a dry run and an
import, each run by a real Celery worker (solo pool) from the job's id, timed from queueing to
"done" (the map publications the rows request stay queued: the worker is not this host's).
Users: --users new directory entries, the same way; the baseline is
accounts.administration.create_mail_user in a loop (one LDAP add each, password hashed).
Prints seconds, rows/s and the import's time over the baseline's.
"""

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from accounts import administration, directory  # noqa: E402
from aliases.models import Alias, AliasTombstone, Domain  # noqa: E402
from aliases.services import create_alias  # noqa: E402
from benchmarks.publication import stop_worker  # noqa: E402
from bulk import csvfiles, tasks  # noqa: E402
from bulk.models import ImportJob  # noqa: E402
from mfa import sealing  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
DOMAIN = "bench-import.example.org"


def start_worker() -> subprocess.Popen[bytes]:
    log = open(Path(settings.STATE_DIR) / "bench-import-worker.log", "a")  # noqa: SIM115 -- the worker's
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mailadmin", "worker", "-P", "solo", "-l", "WARNING",
         "--without-mingle", "--without-gossip"],
        cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # Not this host's map queue, and the rows' publication requests go to a queue nobody
        # consumes here: each row requests one (queued, as in production), and publishing
        # meanwhile would take the CPU from both sides alike
        # (scripts/bench publication measures publishing).
        env={**os.environ, "MAILADMIN_MAIL_HOST": "bench-import-no-maps", "MAILADMIN_MAP_HOSTS": "bench-import-queued"},
    )  # fmt: skip


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def through_worker(admin: User, kind: str, text: str, rows: int, source: ImportJob | None) -> tuple[ImportJob, float]:
    job = ImportJob.objects.create(
        kind=kind, dry_run=source is None, created_by=admin, source=source,
        filename="bench.csv", sealed_content=sealing.seal(text), total_rows=rows,
    )  # fmt: skip
    start = time.perf_counter()
    tasks.run_import.delay(job.pk)
    shown = -1
    while True:
        job.refresh_from_db()
        if job.state == ImportJob.State.DONE:
            break
        if job.processed_rows // 2000 != shown // 2000:
            shown = job.processed_rows
            print(f"    … {job.processed_rows} of {rows} rows", flush=True)
        time.sleep(0.2)
    return job, time.perf_counter() - start


def dry_run_and_import(admin: User, kind: str, text: str, rows: int, baseline: float) -> None:
    dry, seconds = through_worker(admin, kind, text, rows, None)
    report("dry run (worker)", rows, seconds, baseline)
    print(f"    outcomes: {counts(dry)}")
    job, seconds = through_worker(admin, kind, text, rows, dry)
    report("import (worker)", rows, seconds, baseline)
    print(f"    outcomes: {counts(job)}")


def report(label: str, rows: int, seconds: float, baseline: float | None = None) -> None:
    ratio = f"{seconds / baseline:6.2f}× the baseline" if baseline else ""
    print(f"  {label:<34} {seconds:8.2f} s {rows / seconds:9.0f} rows/s   {ratio}", flush=True)


def counts(job: ImportJob) -> str:
    return ", ".join(
        f"{outcome} {n}" for outcome, n in job.rows.values_list("outcome").annotate(n=django.db.models.Count("id"))
    )


def aliases(admin: User, rows: int, owners: int) -> None:
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

    clear()
    print(f"\naliases: {rows} rows for {owners} owners")
    baseline = timed(
        lambda: [
            create_alias(None, people[uid], local_part=local, domain=domain, kind="custom", actor=admin)
            for local, uid in table
        ]
    )
    report("baseline: create_alias in a loop", rows, baseline)
    clear()
    text = "".join(csvfiles.csv_lines(("address", "owner"), ((f"{local}@{DOMAIN}", uid) for local, uid in table)))
    dry_run_and_import(admin, "aliases", text, rows, baseline)
    assert Alias.objects.filter(domain=domain).count() == rows
    clear()


def users(admin: User, rows: int) -> None:
    uids = [f"bnew{n:06d}" for n in range(rows)]

    def clear() -> None:
        for uid in uids:
            directory.delete_user(uid)

    print(f"\nusers: {rows} new directory entries")
    clear()
    baseline = timed(
        lambda: [
            administration.create_mail_user(
                uid, f"Bench Person {uid}", f"{uid}@{settings.MAIL_DOMAIN}", "Bench pass 12345", None, actor=admin
            )
            for uid in uids
        ]
    )
    report("baseline: create_mail_user in a loop", rows, baseline)
    clear()
    text = "".join(
        csvfiles.csv_lines(
            ("uid", "name", "mail"), ((uid, f"Bench Person {uid}", f"{uid}@{settings.MAIL_DOMAIN}") for uid in uids)
        )
    )
    dry_run_and_import(admin, "users", text, rows, baseline)
    clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--owners", type=int, default=100)
    args = parser.parse_args()
    call_command("migrate", "--noinput", verbosity=0)
    admin, _ = User.objects.get_or_create(username="benchimportadmin")
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    worker = start_worker()
    try:
        if args.rows:
            aliases(admin, args.rows, args.owners)
        if args.users:
            users(admin, args.users)
    finally:
        stop_worker(worker)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
