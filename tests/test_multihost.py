"""Two mail hosts: two real Celery workers, each publishing for its own simulated mail host
(MAILADMIN_MAIL_HOST) into its own map directory, from one database and one Redis. After
every change both hosts' maps converge, also when one host was down (stopped, or killed)
during the change.

The workers are separate processes, so the changes are made in the run's own database
(STATE_DIR/mailadmin.sqlite3, or the PostgreSQL run's database), not in pytest's test database.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.test_publication import lookup as table_lookup

pytestmark = pytest.mark.e2e

DOMAIN = "multihost.example.org"
OWNER_MAIL = "mhowner@example.org"


def in_app(code: str, **env_vars: str) -> str:
    """Run code with Django set up, against the run's database (where the workers look)."""
    program = "import django\ndjango.setup()\n" + code
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mailadmin.settings", **env_vars}
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


CHANGE = """
from django.contrib.auth.models import User
from django.db import transaction
from aliases.models import Alias, Domain
from postfix.publication import request_publication
owner = User.objects.get(email="{owner}")
domain = Domain.objects.get(name="{domain}")
with transaction.atomic():
    for local in {create!r}:
        Alias.objects.create(owner=owner, local_part=local, domain=domain)
    Alias.objects.filter(domain=domain, local_part__in={disable!r}).update(enabled=False)
    Alias.objects.filter(domain=domain, local_part__in={delete!r}).delete()
    request_publication("test: multi-host change")
"""


def change(
    hosts: "list[MailHost]", create: tuple[str, ...] = (), disable: tuple[str, ...] = (), delete: tuple[str, ...] = ()
) -> None:
    """A change as the web app makes it: with every mail host in MAP_HOSTS, so each gets a task."""
    code = CHANGE.format(
        owner=OWNER_MAIL, domain=DOMAIN, create=list(create), disable=list(disable), delete=list(delete)
    )
    in_app(code, MAILADMIN_MAP_HOSTS=",".join(host.name for host in hosts))


def lookup(map_dir: Path, table: str, key: str) -> str:
    return table_lookup(table, key, map_dir) or ""


def sources(map_dir: Path) -> dict[str, str]:
    return {name: (map_dir / name).read_text() for name in settings.POSTFIX_MAPS if (map_dir / name).exists()}


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


class MailHost:
    """One simulated mail host: its name, its map directory, and its worker process."""

    def __init__(self, name: str, all_hosts: list[str], root: Path) -> None:
        self.name = name
        self.map_dir = root / name / "maps"
        self.map_dir.mkdir(parents=True)
        self.log = root / name / "worker.log"
        self.env = {
            **os.environ,
            "MAILADMIN_MAIL_HOST": name,
            "MAILADMIN_MAP_HOSTS": ",".join(all_hosts),
            "MAILADMIN_POSTFIX_MAP_DIR": str(self.map_dir),
            # Not a real Postfix: nothing to reload.
            "MAILADMIN_POSTFIX_RELOAD_COMMAND": "/bin/true",
            "MAILADMIN_POSTFIX_RELOAD_MIN_INTERVAL": "0",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "mailadmin", "worker", "-P", "solo", "-l", "INFO",
                 "-n", f"{self.name}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat"],
                cwd=settings.BASE_DIR, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        assert wait_until(lambda: self.log.read_text().count("ready.") >= self.starts), self.log.read_text()[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def has(self, address: str, target: str) -> bool:
        return lookup(self.map_dir, "virtual", address) == target

    def refuses(self, address: str) -> bool:
        return lookup(self.map_dir, "recipient_access", address).startswith("550 ")


@pytest.fixture
def hosts(tmp_path: Path, make_directory_user) -> Iterator[list[MailHost]]:
    make_directory_user(uid="mhowner", mail=OWNER_MAIL)  # alias targets come from the directory
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=settings.BASE_DIR, check=True)
    in_app(
        "from aliases.models import Domain\nfrom django.contrib.auth.models import User\n"
        f"Domain.objects.get_or_create(name='{DOMAIN}', defaults={{'is_alias_domain': True}})\n"
        f"User.objects.get_or_create(username='mhowner', defaults={{'email': '{OWNER_MAIL}'}})\n"
    )
    names = [f"mxa{secrets.token_hex(3)}", f"mxb{secrets.token_hex(3)}"]
    made = [MailHost(name, names, tmp_path) for name in names]
    try:
        yield made
    finally:
        for host in made:
            host.stop()
        # Leave the run's database as found: other end-to-end tests count publication states.
        in_app(
            "from aliases.models import Alias, Domain\n"
            "from postfix.models import MapPublication\n"
            f"MapPublication.objects.filter(host__in={names!r}).delete()\n"
            f"Alias.objects.filter(domain__name='{DOMAIN}').delete()\n"
        )


def converged(hosts: list[MailHost], present: dict[str, str], absent: tuple[str, ...] = ()) -> bool:
    for host in hosts:
        if not all(host.has(address, target) for address, target in present.items()):
            return False
        if any(lookup(host.map_dir, "virtual", address) for address in absent):
            return False
    return len({repr(sources(host.map_dir)) for host in hosts}) == 1


def publication_states() -> dict[str, tuple[int, str]]:
    out = in_app(
        "from postfix.models import MapGeneration, MapPublication\n"
        "print(MapGeneration.objects.get(pk=1).requested)\n"
        "for host, generation, error in MapPublication.objects.values_list('host', 'published_generation', "
        "'last_error'):\n"
        "    print(host, generation, repr(error))\n"
    )
    lines = out.strip().splitlines()
    states = {line.split()[0]: (int(line.split()[1]), line.split(" ", 2)[2]) for line in lines[1:]}
    states["requested"] = (int(lines[0]), "")
    return states


def test_two_mail_hosts_converge_after_every_change_even_when_one_was_down(hosts: list[MailHost]) -> None:
    a, b = hosts
    tag = secrets.token_hex(3)
    first, second, third, fourth = (f"{word}{tag}@{DOMAIN}" for word in ("first", "second", "third", "fourth"))
    local = {address: address.split("@")[0] for address in (first, second, third, fourth)}
    for host in hosts:
        host.start()

    # Both up: a new alias reaches both hosts.
    change(hosts, create=(local[first],))
    assert wait_until(lambda: converged(hosts, {first: OWNER_MAIL})), (a.log.read_text()[-2000:], b.log.read_text())

    # Both up: switched off on both (refused, not forwarded), another one added.
    change(hosts, create=(local[second],), disable=(local[first],))
    assert wait_until(lambda: converged(hosts, {second: OWNER_MAIL}, absent=(first,)))
    assert a.refuses(first) and b.refuses(first)

    # Host B is stopped during a change: A publishes it, B keeps its last tables meanwhile.
    b.stop()
    before = sources(b.map_dir)
    change(hosts, create=(local[third],), delete=(local[second],))
    assert wait_until(lambda: converged([a], {third: OWNER_MAIL}, absent=(second,)))
    assert sources(b.map_dir) == before and b.has(second, OWNER_MAIL)
    # B comes back and catches up by itself.
    b.start()
    assert wait_until(lambda: converged(hosts, {third: OWNER_MAIL}, absent=(second,))), b.log.read_text()[-3000:]

    # Host A crashes (SIGKILL) and misses a change; once it is back, both agree again.
    a.stop(signal.SIGKILL)
    change(hosts, create=(local[fourth],))
    assert wait_until(lambda: converged([b], {fourth: OWNER_MAIL}))
    assert lookup(a.map_dir, "virtual", fourth) == ""
    a.start()
    assert wait_until(lambda: converged(hosts, {third: OWNER_MAIL, fourth: OWNER_MAIL})), a.log.read_text()[-3000:]

    # Each host recorded its own state, both at the last change, without an error.
    states = publication_states()
    requested = states["requested"][0]
    assert wait_until(lambda: all(publication_states()[h.name] == (requested, "''") for h in hosts), 30), states
