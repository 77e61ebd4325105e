"""Where a page's server time goes: one signed-in admin, the pages of `scripts/bench pages`, in
process (Django's test client, production settings, the real slapd and SQLite).

scripts/bench page_profile [--users N] [--aliases N] [--requests N] [--page NAME]... [--top N]

Per page: CPU ms per request in this process (the web side only; slapd's share is in
`scripts/bench pages`), SQL queries, LDAP connections and searches per request, then the
functions with the most cumulative time under cProfile.
"""

import argparse
import cProfile
import functools
import importlib
import os
import pstats
import time
from collections.abc import Callable

os.environ.update(
    MAILADMIN_DEBUG="0",
    MAILADMIN_SECRET_KEY="bench-only-" + "x" * 50,
    MAILADMIN_SSL_REDIRECT="0",
    MAILADMIN_SECURE_COOKIES="0",
    MAILADMIN_ALLOWED_HOSTS="testserver",
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")

import django  # noqa: E402

django.setup()

import ldap3  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from benchmarks.pages import ADMIN, BASELINE_PAGE, PAGES, PASSWORD, SEARCHES, prepare  # noqa: E402
from mfa import services as mfa_services  # noqa: E402


def signed_in() -> Client:
    client = Client()
    response = client.post("/accounts/sign-in/", {"username": ADMIN, "password": PASSWORD})
    if response.status_code == 302 and response["Location"].startswith(reverse("mfa:verify")):
        code = mfa_services.new_recovery_codes(None, User.objects.get(username=ADMIN))[0]
        response = client.post(reverse("mfa:verify"), {"code": code})
    if response.status_code != 302:
        raise RuntimeError(f"sign-in failed: HTTP {response.status_code}")
    return client


class LdapCounter:
    """Connections opened (binds) and searches sent, by patching ldap3 for the whole run."""

    def __init__(self) -> None:
        self.binds = 0
        self.searches = 0
        real_bind, real_search = ldap3.Connection.bind, ldap3.Connection.search

        def bind(conn: ldap3.Connection, *args: object, **kwargs: object) -> object:
            self.binds += 1
            return real_bind(conn, *args, **kwargs)

        def search(conn: ldap3.Connection, *args: object, **kwargs: object) -> object:
            self.searches += 1
            return real_search(conn, *args, **kwargs)

        ldap3.Connection.bind = bind  # type: ignore[method-assign]
        ldap3.Connection.search = search  # type: ignore[method-assign]


PHASES = [
    ("django.test.client", "ClientHandler", "__call__"),
    ("django.contrib.sessions.backends.db", "SessionStore", "load"),
    ("django.contrib.sessions.backends.db", "SessionStore", "save"),
    ("django.contrib.auth", None, "get_user"),
    ("accounts.roles", None, "role_context"),
    ("accounts.suspension", None, "suspension_context"),
    ("mfa.middleware", "SecondFactorMiddleware", "__call__"),
    ("accounts.session_check", None, "recheck"),
    ("django.template.backends.django", "Template", "render"),
    ("mailadmin.navigation", "NavigationNode", "render"),
    ("aliases.listing", None, "state_counts"),
    ("aliases.listing", None, "values"),
    ("aliases.listing", None, "render_rows"),
    ("mailadmin.compiled_sql", "Compiled", "run"),
    ("django.core.paginator", "Paginator", "get_page"),
    ("accounts.directory", None, "list_users"),
    ("console.people", None, "people_page"),
    ("django.forms.boundfield", "BoundField", "as_widget"),
    ("django.template.loader_tags", "IncludeNode", "render"),
    ("aliases.listing", None, "filter_links"),
    ("aliases.listing", None, "headings"),
    ("django.middleware.csrf", None, "get_token"),
    ("django.contrib.messages.storage.session", "SessionStorage", "_get"),
    ("mailadmin.timezones", "TimezoneMiddleware", "__call__"),
    ("django.db.models.sql.compiler", "SQLCompiler", "as_sql"),
    ("django.db.backends.utils", "CursorWrapper", "execute"),
    ("django.db.models.query", "QuerySet", "_fetch_all"),
]


class Phases:
    """Inclusive CPU time in each of PHASES (outermost call only), by wrapping them in place."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        for module_name, owner_name, attribute in PHASES:
            module = importlib.import_module(module_name)
            owner = getattr(module, owner_name) if owner_name else module
            label = f"{owner_name or module_name}.{attribute}"
            setattr(owner, attribute, self._wrap(label, getattr(owner, attribute)))
            self.spent[label] = 0.0

    def _wrap(self, label: str, function: Callable[..., object]) -> Callable[..., object]:
        depth = [0]

        @functools.wraps(function)
        def timed(*args: object, **kwargs: object) -> object:
            depth[0] += 1
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    self.spent[label] += time.process_time() - started

        return timed

    def report(self, requests: int) -> None:
        for label, spent in self.spent.items():
            if requests:
                print(f"   {spent / requests * 1000:7.3f} ms  {label}")
            self.spent[label] = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--aliases", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--page", action="append")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--session-recheck", action="store_true", help="every request re-checks LDAP")
    parser.add_argument("--phases", action="store_true", help="CPU per request in named functions instead of cProfile")
    parser.add_argument("--dump", help="write each page's HTML (first request) into this directory")
    parser.add_argument("--loop", type=int, default=0, help="only ask for each page this often (for py-spy)")
    args = parser.parse_args()
    pages = args.page or ["alias list", "admin user search", BASELINE_PAGE]
    prepare(args.users, args.aliases)
    timed = Phases() if args.phases else None
    client = signed_in()
    ldap = LdapCounter()
    if args.session_recheck:
        settings.SESSION_RECHECK_SECONDS = 0
    if args.dump:
        for name in PAGES:
            for n in range(len(SEARCHES)):
                with open(os.path.join(args.dump, f"{name}-{n}.html"), "wb") as out:
                    out.write(client.get(PAGES[name](n)).content)
    if args.loop:
        for name in pages:
            for n in range(args.loop):
                client.get(PAGES[name](n))
        return
    for name in pages:
        for n in range(20):  # warm caches (templates, URL resolver, slapd)
            client.get(PAGES[name](n))
        binds, searches = ldap.binds, ldap.searches
        with CaptureQueriesContext(connection) as queries:
            client.get(PAGES[name](0))
        one = (len(queries), ldap.binds - binds, ldap.searches - searches)
        started = time.process_time()
        for n in range(args.requests):
            client.get(PAGES[name](n))
        cpu = (time.process_time() - started) / args.requests
        print(
            f"\n=== {name}: {cpu * 1000:.2f} ms CPU per request (this process); "
            f"{one[0]} SQL queries, {one[1]} LDAP binds, {one[2]} LDAP searches per request"
        )
        for query in queries:
            print("   SQL", query["sql"][:160])
        if timed is not None:
            timed.report(0)  # forget the warm-up and the runs above
            for n in range(args.requests):
                client.get(PAGES[name](n))
            timed.report(args.requests)
            continue
        if not args.top:
            continue
        profile = cProfile.Profile()
        profile.enable()
        for n in range(args.requests):
            client.get(PAGES[name](n))
        profile.disable()
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
