"""Explain an address on published tables of a given size, against a bare postmap -q.

scripts/bench explain [--sizes 1000000] [--owners 1000] [--repeat 20]

For each size: aliases in the run's own SQLite database spread over --owners owners who are in
the private directory (plus a catch-all domain, a disabled alias and a mailbox on vacation), all
tables published by the real publisher into the benchmark's own map directory. Then, alternately
in the same run, --repeat times each: one bare `postmap -q KEY lmdb:virtual` (one process, one
key: the least any look-up costs), explain's live look-ups alone, and the whole explanation
(live look-ups, the same keys rendered from the database and the directory, the LDAP flag, the
blocks, the publication state) for four addresses of different kinds. Medians, p95 and ratios.
"""

import argparse
import os
import statistics
import subprocess
import time

# First: sets the benchmark's own map directory and host in the environment, and sets up Django.
from benchmarks.publication import MAP_DIR, fill

# isort: split
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

from accounts import directory
from aliases.models import Alias, Domain
from explain import services
from outofoffice.models import VacationReply
from postfix import publication
from postfix.models import MapPublication

TARGET_MS = 200


def bare_query(key: str) -> float:
    argv = [settings.POSTMAP_COMMAND, "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", key, f"lmdb:{MAP_DIR / 'virtual'}"]
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)  # noqa: S603
    return time.perf_counter() - started


def timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def owners(count: int) -> list[User]:
    known = {entry.uid for entry in directory.mail_entries()}
    for n in range(count):
        if f"owner{n}" not in known:
            directory.create_user(
                uid=f"owner{n}", cn=f"Owner {n}", sn="Owner", mail=f"owner{n}@example.org", password=None
            )
    wanted = [User(username=f"owner{n}", email=f"owner{n}@example.org") for n in range(count)]
    User.objects.bulk_create(wanted, ignore_conflicts=True)
    return list(User.objects.filter(username__in=[user.username for user in wanted]).order_by("pk"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    settings.POSTFIX_MAP_TYPE = "lmdb"

    call_command("migrate", "--noinput", verbosity=0)
    people = owners(args.owners)
    domain, _ = Domain.objects.get_or_create(name="bench.example.org", defaults={"is_alias_domain": True})
    catchall, _ = Domain.objects.get_or_create(name="catch.bench.example.org", defaults={"catchall_owner": people[0]})
    VacationReply.objects.get_or_create(uid=people[1].username, defaults={"address": people[1].email, "enabled": True})
    MAP_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{args.owners} people in the directory own the aliases; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'aliases':>9} {'kind':>16} {'postmap -q p50':>14} {'live p50':>9} {'explain p50':>11} "
        f"{'explain p95':>11} {'ratio':>6} {'load':>5}"
    )
    for size in sizes(args.sizes):
        fill(domain, [person.pk for person in people], size)
        disabled = Alias.objects.filter(domain=domain).order_by("pk")[size // 3]
        Alias.objects.filter(pk=disabled.pk).update(enabled=False)
        MapPublication.objects.filter(host=settings.MAIL_HOST).delete()
        started = time.perf_counter()
        outcome = publication.publish(force=True, coalesce=False)
        assert outcome.status in ("published", "unchanged"), outcome.error
        print(f"{size:>9} published in {time.perf_counter() - started:.1f} s", flush=True)
        middle = Alias.objects.filter(domain=domain, enabled=True).order_by("pk")[size // 2]
        addresses = {
            "alias": middle.address,
            "disabled alias": disabled.address,
            "catch-all": f"nobody@{catchall.name}",
            "vacation mailbox": people[1].email,
        }
        for kind, address in addresses.items():
            services.explain(address)  # warm: the first run imports and connects
            bare, live, whole = [], [], []
            for _ in range(args.repeat):
                bare.append(bare_query(middle.address))
                live.append(timed(lambda: services.live_tables(address)))  # noqa: B023
                whole.append(timed(lambda: services.explain(address)))  # noqa: B023
            p50 = statistics.median(whole)
            print(
                f"{size:>9} {kind:>16} {statistics.median(bare) * 1000:>11.1f} ms "
                f"{statistics.median(live) * 1000:>6.1f} ms "
                f"{p50 * 1000:>8.1f} ms {percentile(whole, 0.95) * 1000:>8.1f} ms "
                f"{p50 / statistics.median(bare):>6.1f} {os.getloadavg()[0]:>5.1f}",
                flush=True,
            )
    print(f"target: explain <= {TARGET_MS} ms at 1,000,000 aliases")


def sizes(text: str) -> list[int]:
    return [int(size) for size in text.split(",")]


if __name__ == "__main__":
    main()
