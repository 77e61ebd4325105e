"""Page speed under load: the real stack (gunicorn workers, slapd, SQLite) with many clients.

scripts/bench pages [--users N] [--aliases N] [--clients N] [--rounds N] [--workers N] [--think S] [--page NAME]...

Loads N directory users (default 100,000) into the private slapd with slapadd, gives one
admin 1,000 aliases, starts gunicorn with production settings (DEBUG off, static files from
collectstatic through WhiteNoise) on the bench's web port, signs in 20 clients through the
sign-in form and has them walk the main pages concurrently: alias list, admin user search,
overview, vacation. With --think 0 (default) each client asks for the next page as soon as it
has the last one (the server is saturated); --think S makes each wait about S seconds, like
a person reading. Prints p50/p95 per page and requests per second for the mixed walk, then
runs each page alone (every client asking only for it) and prints its p50/p95, requests per
second and the server's CPU time per request (gunicorn workers + slapd). --page picks pages.
"""

import argparse
import http.client
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.urls import reverse  # noqa: E402

from accounts import directory  # noqa: E402
from aliases.models import Alias, Domain  # noqa: E402
from benchmarks.directory_search import ldif  # noqa: E402
from localservices.process import read_pid, wait_for_port  # noqa: E402
from localservices.slapd import Slapd  # noqa: E402
from mfa import sealing, totp  # noqa: E402
from mfa import services as mfa_services  # noqa: E402
from mfa.models import TotpDevice  # noqa: E402

ADMIN = "benchpages"
PASSWORD = "bench pages password 42"
SEARCHES = ["Miller", "ovak", "amiller004711", "anna.miller12", "Okafor", "zzqq"]
PAGES = {
    "alias list": lambda n: "/aliases/",
    "alias list, page 10": lambda n: "/aliases/?page=10",
    "admin user search": lambda n: "/directory/?" + urllib.parse.urlencode({"q": SEARCHES[n % len(SEARCHES)]}),
    # Baseline in the same run: the same searches, unsorted and uncounted (the helpdesk's
    # vacation search pages through the directory as the user list did before it sorted).
    "unsorted search (base)": lambda n: (
        "/out-of-office/helpdesk/?" + urllib.parse.urlencode({"q": SEARCHES[n % len(SEARCHES)]})
    ),
    "user list, filtered": lambda n: (
        "/directory/?" + urllib.parse.urlencode({"q": SEARCHES[n % len(SEARCHES)], "state": "active", "sort": "-name"})
    ),
    "overview": lambda n: "/",
    "vacation": lambda n: "/out-of-office/vacation/",
}
BASELINE_PAGE = "vacation"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def production_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MAILADMIN_DEBUG="0",
        MAILADMIN_SECRET_KEY="bench-only-" + "x" * 50,
        MAILADMIN_SSL_REDIRECT="0",  # plain HTTP on loopback; production sits behind TLS
        MAILADMIN_SECURE_COOKIES="0",
        MAILADMIN_ALLOWED_HOSTS="127.0.0.1",
    )
    return env


def prepare(users: int, aliases: int) -> None:
    call_command("migrate", "--noinput", verbosity=0)
    slapd = Slapd()
    started = time.perf_counter()
    text = ldif(users)
    slapd.stop()
    slapd.slapadd(text)
    slapd.start()
    print(f"loaded {users} directory users with slapadd in {time.perf_counter() - started:.1f} s")
    directory.create_user(ADMIN, "Bench Pages", "Pages", f"{ADMIN}@{settings.MAIL_DOMAIN}", PASSWORD, "Bench")
    directory.add_to_group(ADMIN, settings.LDAP_ADMIN_GROUP_DN)
    # The Django user row exists once the admin has signed in; make it now to own the aliases.
    owner, _ = User.objects.get_or_create(username=ADMIN, defaults={"email": f"{ADMIN}@{settings.MAIL_DOMAIN}"})
    TotpDevice.objects.get_or_create(user=owner, defaults={"sealed_secret": sealing.seal(totp.new_secret())})
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    Alias.objects.bulk_create(
        Alias(
            owner=owner,
            local_part=f"site{n:05d}",
            domain=domain,
            kind=Alias.Kind.PER_SITE,
            site=f"shop{n}.example.com",
            enabled=n % 7 != 0,
        )
        for n in range(aliases)
    )
    print(f"{ADMIN} owns {Alias.objects.filter(owner=owner).count()} aliases")


class Browser:
    """One client with its own session; a new connection per request (gunicorn's sync workers
    close each one). http.client rather than urllib keeps the client's own CPU use small."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Host": "127.0.0.1"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return response.status, content
        finally:
            connection.close()

    def get(self, path: str) -> bytes:
        status, content = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
        return content

    def post_form(self, path: str, fields: dict[str, str]) -> int:
        token = CSRF_FIELD.search(self.get(path).decode())
        assert token is not None
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields})
        status, _ = self.request("POST", path, body)
        return status

    def sign_in(self, recovery_code: str) -> None:
        """Password, then the second factor admins must give (a recovery code: one per client,
        where a TOTP code could be used only once per step by all of them together)."""
        status = self.post_form("/accounts/sign-in/", {"username": ADMIN, "password": PASSWORD})
        if status == 302:
            status = self.post_form(reverse("mfa:verify"), {"code": recovery_code})
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"sign-in failed: HTTP {status}")


def signed_in_browsers(port: int, clients: int) -> list[Browser]:
    admin = User.objects.get(username=ADMIN)
    if not TotpDevice.objects.filter(user=admin).exists():
        TotpDevice.objects.create(user=admin, sealed_secret=sealing.seal(totp.new_secret()))
    browsers = [Browser(port) for _ in range(clients)]
    for browser in browsers:
        browser.sign_in(mfa_services.new_recovery_codes(None, admin)[0])
        for path in PAGES.values():  # warm every worker's caches a little
            browser.get(path(0))
    return browsers


def run_clients(
    browsers: list[Browser], rounds: int, think: float, pages: list[str] | None = None
) -> tuple[dict[str, list[float]], float, int]:
    pages = pages or list(PAGES)
    samples: dict[str, list[float]] = {name: [] for name in pages}
    lock = threading.Lock()
    errors: list[str] = []
    barrier = threading.Barrier(len(browsers) + 1)

    def walk(index: int, browser: Browser) -> None:
        rng = random.Random(index)  # noqa: S311 -- order of pages only
        barrier.wait()
        for n in range(rounds):
            names = list(pages)
            rng.shuffle(names)
            for name in names:
                start = time.perf_counter()
                try:
                    browser.get(PAGES[name](n + index))
                except Exception as exc:  # report, keep the others going
                    errors.append(f"{name}: {exc}")
                    continue
                with lock:
                    samples[name].append(time.perf_counter() - start)
                if think:
                    time.sleep(rng.uniform(0.5 * think, 1.5 * think))  # a person reading the page

    threads = [threading.Thread(target=walk, args=(i, b)) for i, b in enumerate(browsers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        print(f"{len(errors)} failed requests, e.g. {errors[:3]}", file=sys.stderr)
    return samples, elapsed, len(errors)


def cpu_seconds(pids: list[int], *, children: bool = False) -> float:
    """User+system CPU time of these processes so far (Linux /proc); with `children`, also of
    the children they waited for."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(value) for value in fields[11 : 15 if children else 13])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def worker_pids(master: int) -> list[int]:
    with open(f"/proc/{master}/task/{master}/children") as children:
        return [int(pid) for pid in children.read().split()]


def _p95(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def report(samples: dict[str, list[float]], elapsed: float) -> None:
    total = sum(len(s) for s in samples.values())
    print(f"\n{'page':22s} {'n':>6s} {'p50 ms':>9s} {'p95 ms':>9s} {'max ms':>9s}")
    for name, values in samples.items():
        ordered = sorted(values)
        print(
            f"{name:22s} {len(ordered):6d} {statistics.median(ordered) * 1000:9.1f} {_p95(ordered) * 1000:9.1f} "
            f"{ordered[-1] * 1000:9.1f}"
        )
    print(f"\n{total} requests in {elapsed:.1f} s: {total / elapsed:.0f} requests per second")


def start_gunicorn(workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """gunicorn with this many sync workers on WEB_PORT, answering (its own process group)."""
    gunicorn = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "mailadmin.wsgi", "--workers", str(workers),
            "--bind", f"127.0.0.1:{settings.WEB_PORT}", "--log-level", "warning",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    wait_for_port(settings.WEB_PORT, "gunicorn", timeout=60)
    return gunicorn


def per_page(browsers: list[Browser], server: list[int], slapd: list[int], rounds: int, pages: list[str]) -> None:
    """Each page alone: every client asks for it `rounds` times; the server's CPU time over that
    phase divided by its requests is the page's CPU per request (gunicorn workers + slapd)."""
    # The baseline, measured in the same run: the vacation page, the plainest signed-in page
    # (one form, no list). A busy machine inflates every page's CPU time; the ratio much less.
    baseline = BASELINE_PAGE if BASELINE_PAGE in pages else pages[0]
    order = [baseline, *(name for name in pages if name != baseline)]
    print(f"\neach page alone ({len(browsers)} clients x {rounds} requests, no think time):")
    print(
        f"{'page':22s} {'n':>6s} {'p50 ms':>9s} {'p95 ms':>9s} {'req/s':>7s} {'CPU ms/req':>11s} {'x ' + baseline:>14s}"
        f" {'of it slapd':>12s}"
    )
    base_cpu = 0.0
    cpu_per_request: dict[str, float] = {}
    for name in order:
        before, slapd_before = cpu_seconds(server), cpu_seconds(slapd)
        samples, elapsed, _ = run_clients(browsers, rounds, 0.0, [name])
        per_request = (cpu_seconds(server) - before) / max(1, len(samples[name]))
        slapd_per_request = (cpu_seconds(slapd) - slapd_before) / max(1, len(samples[name]))
        base_cpu = base_cpu or per_request
        ordered = sorted(samples[name])
        cpu_per_request[name] = per_request * 1000
        print(
            f"{name:22s} {len(ordered):6d} {statistics.median(ordered) * 1000:9.1f} {_p95(ordered) * 1000:9.1f} "
            f"{len(ordered) / elapsed:7.0f} {per_request * 1000:11.2f} {per_request / base_cpu:14.2f}"
            f" {slapd_per_request * 1000:12.2f}"
        )
    base = cpu_per_request.get("unsorted search (base)")
    for name in ("admin user search", "user list, filtered"):
        if base and name in cpu_per_request:
            print(f"{name}: {cpu_per_request[name] / base:.2f}x the server CPU of the unsorted, uncounted search")
    print(f"(load average now {os.getloadavg()[0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--aliases", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--think", type=float, default=0.0, help="mean seconds a client waits between pages (0: none, saturate)"
    )
    parser.add_argument("--page", action="append", help=f"run only this page (repeatable): {'; '.join(PAGES)}")
    args = parser.parse_args()
    pages = args.page or list(PAGES)
    unknown = set(pages) - set(PAGES)
    if unknown:
        parser.error(f"unknown pages: {', '.join(sorted(unknown))}")

    prepare(args.users, args.aliases)
    env = production_env()
    collectstatic = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"]
    subprocess.run(collectstatic, cwd=settings.BASE_DIR, env=env, check=True)
    port = settings.WEB_PORT
    gunicorn = start_gunicorn(args.workers, env)
    try:
        base = f"http://127.0.0.1:{port}"
        print(
            f"gunicorn: {args.workers} workers on {base}; {args.clients} clients x {args.rounds} rounds, "
            f"think time {args.think:g} s"
        )
        # Server CPU per request does not depend on what else the machine runs, unlike latency.
        browsers = signed_in_browsers(port, args.clients)
        slapd = read_pid(Slapd().pidfile)
        server = [*worker_pids(gunicorn.pid), *([slapd] if slapd else [])]
        cpu_before = cpu_seconds(server)
        samples, elapsed, errors = run_clients(browsers, args.rounds, args.think, pages)
        cpu = cpu_seconds(server) - cpu_before
        print("\nall pages mixed:")
        report(samples, elapsed)
        requests = sum(len(s) for s in samples.values())
        print(
            f"server CPU (gunicorn workers + slapd): {cpu:.1f} s, {cpu / requests * 1000:.1f} ms per request; "
            f"{cpu / elapsed:.2f} cores busy on average (load average now {os.getloadavg()[0]:.1f})"
        )
        per_page(browsers, server, [slapd] if slapd else [], args.rounds, pages)
        if errors:
            sys.exit(1)
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(timeout=30)


if __name__ == "__main__":
    main()
