"""Admin directory search over a large directory.

scripts/bench directory_search [--users N] [--repeat R]

Loads N users (default 100,000) into the private slapd with slapadd, then times searches
(substring on uid, cn and mail; 25 per page, server-side paged) through
accounts.directory.search_users and through the /directory/ page with a signed-in admin,
and prints p50/p95 per kind of query and overall.
"""

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from accounts import directory  # noqa: E402
from accounts.cram_md5 import cram_md5_hash  # noqa: E402
from localservices.slapd import Slapd  # noqa: E402

FIRST = ["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Karin", "Lukas"]
LAST = ["Miller", "Schmidt", "Novak", "Rossi", "Dubois", "Jensen", "Kowalski", "Garcia", "Berg", "Okafor"]
ADMIN = "benchadmin"
PASSWORD = "bench password 123 long"


def ldif(count: int) -> str:
    rng = random.Random(1)  # noqa: S311 -- reproducible test data
    people = settings.LDAP_PEOPLE_DN
    chunks = []
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        uid = f"{first[0].lower()}{last.lower()}{n:06d}"
        chunks.append(
            f"dn: uid={uid},{people}\nobjectClass: inetOrgPerson\nobjectClass: mailAccount\n"
            f"uid: {uid}\ncn: {first} {last} {n}\ngivenName: {first}\nsn: {last}\n"
            f"mail: {first.lower()}.{last.lower()}{n}@{settings.MAIL_DOMAIN}\n"
            f"{settings.LDAP_SENDER_BLOCK_ATTR}: FALSE\n"
        )
    return "\n".join(chunks)


QUERIES = {
    "uid, exact-ish": ["amiller004711", "jberg099999", "hnovak050000"],
    "surname": ["Miller", "Okafor", "Kowalski"],
    "part of a name": ["ill", "ovak", "afor"],
    "mail prefix": ["anna.miller12", "felix.berg9"],
    "two letters": ["an", "er"],
    "no match": ["zzqq", "nobody-here"],
    "empty (browse)": [""],
}


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms   (n={len(ordered)})"


def measure(label: str, run: Callable[[str], None], repeat: int) -> None:
    print(f"\n{label}")
    everything: list[float] = []
    for kind, terms in QUERIES.items():
        samples = []
        for _ in range(repeat):
            for term in terms:
                start = time.perf_counter()
                run(term)
                samples.append(time.perf_counter() - start)
        everything += samples
        print(f"  {kind:16s} {percentiles(samples)}")
    print(f"  {'all':16s} {percentiles(everything)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    call_command("migrate", "--noinput", verbosity=0)
    slapd = Slapd()
    started = time.perf_counter()
    text = ldif(args.users)
    slapd.stop()
    slapd.slapadd(text)
    slapd.start()
    print(f"loaded {args.users} users with slapadd in {time.perf_counter() - started:.1f} s (LDIF included)")

    directory.create_user(ADMIN, "Bench Admin", "Admin", f"{ADMIN}@{settings.MAIL_DOMAIN}", PASSWORD)
    directory.add_to_group(ADMIN, settings.LDAP_ADMIN_GROUP_DN)
    assert cram_md5_hash(PASSWORD).startswith("{CRAM-MD5}")

    found, more = directory.search_users("Miller")
    print(f"'Miller': first page {len(found)} users, more: {more}")

    def through_function(term: str) -> None:
        directory.search_users(term, limit=25)

    measure("accounts.directory.search_users (25 per page)", through_function, args.repeat)

    client = Client(HTTP_HOST="127.0.0.1")
    response = client.post("/accounts/sign-in/", {"username": ADMIN, "password": PASSWORD})
    assert response.status_code == 302, response.status_code

    def through_page(term: str) -> None:
        page = client.get("/directory/", {"q": term})
        assert page.status_code == 200, page.status_code

    measure("GET /directory/?q=… signed in as admin (Django test client, whole request)", through_page, args.repeat)

    def deep_page(term: str) -> None:
        page = client.get("/directory/", {"q": term, "page": "40"})
        assert page.status_code == 200

    print("\npage 40 (the last one offered) of a broad search:")
    samples = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        deep_page("er")
        samples.append(time.perf_counter() - start)
    print(f"  {'two letters':16s} {percentiles(samples)}")


if __name__ == "__main__":
    main()
