"""Faults with real processes killed at the worst moment: the map worker in the middle of a
publication, and the vacation responder while Postfix hands it mail.

The worker and the responder are separate processes, so these tests work in the run's own
database (STATE_DIR/mailadmin.sqlite3), not in pytest's test database.
"""

import os
import secrets
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings

from localservices.postfix import Postfix
from localservices.process import free_port, port_open
from tests.test_publication import postmap_query

pytestmark = pytest.mark.e2e

OWNER_MAIL = "faultowner2@example.org"


def in_app(code: str, **env_vars: str) -> str:
    """Run code with Django set up, against the run's database (where the workers look)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mailadmin.settings", **env_vars}
    result = subprocess.run(
        [sys.executable, "-c", "import django\ndjango.setup()\n" + code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def lookup(map_dir: Path, table: str, key: str) -> subprocess.CompletedProcess[str]:
    return postmap_query(table, key, map_dir)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


@pytest.fixture
def run_database() -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=settings.BASE_DIR, check=True)


# --- the worker killed in the middle of a publication ----------------------------------------

HANGING_POSTMAP = """#!/bin/sh
# Builds of the temporary tables hang while {hang} exists: the worker is then mid-publication.
case "$*" in *.tmp*) if [ -e {hang} ]; then : > {started}; sleep 300; fi;; esac
exec {postmap} "$@"
"""


@pytest.fixture
def host_and_domain(run_database: None) -> Iterator[tuple[str, str]]:
    host, domain = f"mxk{secrets.token_hex(3)}", f"killed{secrets.token_hex(2)}.example.org"
    yield host, domain
    # Leave the run's database as found: other end-to-end tests count publication states.
    in_app(
        "from aliases.models import Alias, Domain\n"
        "from postfix.models import MapPublication\n"
        f"MapPublication.objects.filter(host='{host}').delete()\n"
        f"Alias.objects.filter(domain__name='{domain}').delete()\n"
        f"Domain.objects.filter(name='{domain}').delete()\n"
    )


def test_a_worker_killed_mid_publication_leaves_whole_tables_and_its_restart_publishes(
    host_and_domain: tuple[str, str], tmp_path: Path, make_directory_user
) -> None:
    host, domain = host_and_domain
    make_directory_user(uid="faultowner2", mail=OWNER_MAIL)  # alias targets come from the directory
    map_dir = tmp_path / "maps"
    map_dir.mkdir()
    hang, started = tmp_path / "hang", tmp_path / "started"
    postmap = tmp_path / "postmap"
    postmap.write_text(HANGING_POSTMAP.format(hang=hang, started=started, postmap=settings.POSTMAP_COMMAND))
    postmap.chmod(0o755)
    env = {
        "MAILADMIN_MAIL_HOST": host,
        "MAILADMIN_MAP_HOSTS": host,
        "MAILADMIN_POSTFIX_MAP_DIR": str(map_dir),
        "MAILADMIN_POSTMAP_COMMAND": str(postmap),
        "MAILADMIN_POSTFIX_RELOAD_COMMAND": "/bin/true",
    }
    log = tmp_path / "worker.log"

    def start_worker() -> subprocess.Popen[bytes]:
        ready = log.read_text().count(" ready.") if log.exists() else 0
        with log.open("a") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "mailadmin", "worker", "-P", "solo", "-l", "INFO",
                 "-n", f"{host}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat"],
                cwd=settings.BASE_DIR, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        assert wait_until(lambda: log.read_text().count(" ready.") > ready), log.read_text()[-3000:]
        return process

    def change(local: str) -> None:
        in_app(
            "from django.contrib.auth.models import User\nfrom django.db import transaction\n"
            "from aliases.models import Alias, Domain\nfrom postfix.publication import request_publication\n"
            f"owner, _ = User.objects.get_or_create(username='faultowner2', defaults={{'email': '{OWNER_MAIL}'}})\n"
            f"domain, _ = Domain.objects.get_or_create(name='{domain}', defaults={{'is_alias_domain': True}})\n"
            "with transaction.atomic():\n"
            f"    Alias.objects.create(owner=owner, local_part='{local}', domain=domain)\n"
            "    request_publication('test: worker killed')\n",
            **env,
        )

    def target(local: str) -> str:
        return lookup(map_dir, "virtual", f"{local}@{domain}").stdout.strip()

    def published_without_error() -> bool:
        out = in_app(
            "from postfix.models import MapGeneration, MapPublication\n"
            f"state = MapPublication.objects.get(host='{host}')\n"
            "print(MapGeneration.objects.get(pk=1).requested == state.published_generation, "
            "repr(state.last_error))\n"
        )
        return out.split()[-2:] == ["True", "''"]

    worker = start_worker()
    try:
        change("kept")
        assert wait_until(lambda: target("kept") == OWNER_MAIL), log.read_text()[-3000:]
        assert wait_until(published_without_error, 20)  # every map of that change is in place
        before = {name: (map_dir / name).read_bytes() for name in settings.POSTFIX_MAPS}

        hang.touch()
        change("pending")
        assert wait_until(lambda: started.exists()), log.read_text()[-3000:]
        kill_group(worker)  # SIGKILL, worker and postmap alike: a crash, not a shutdown
    finally:
        kill_group(worker)

    # The tables Postfix reads are the previous ones, whole: every one answers, nothing changed.
    assert {name: (map_dir / name).read_bytes() for name in settings.POSTFIX_MAPS} == before
    for name in settings.POSTFIX_MAPS:
        assert lookup(map_dir, name, "probe@example.invalid").returncode == 1, name  # 1: not found, no error
    assert target("kept") == OWNER_MAIL and target("pending") == ""

    # Restarted, nobody asking again: the worker finds the unpublished change and publishes it.
    hang.unlink()
    worker = start_worker()
    try:
        assert wait_until(lambda: target("pending") == OWNER_MAIL), log.read_text()[-3000:]

        assert wait_until(published_without_error, 20)
    finally:
        kill_group(worker)


# --- the responder killed while Postfix hands it mail -------------------------------------------


class Relay:
    """Stands where the responder hands its replies (VACATION_SMTP_PORT). On the first reply it
    kills the responder at a protocol point the responder can tell apart: at RCPT TO, before
    the reply is out (nothing accepted), or after taking the whole message at the end of data,
    before the responder hears the answer (accepted: this relay would deliver it). Later
    replies are accepted normally."""

    def __init__(self, kill_after_accepting: bool) -> None:
        self.kill_after_accepting = kill_after_accepting
        self.accepted: list[tuple[str, list[str], bytes]] = []
        self.victim: subprocess.Popen[bytes] | None = None
        self.killed = threading.Event()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def _kill_first_time(self) -> bool:
        if self.killed.is_set() or self.victim is None:
            return False
        os.killpg(self.victim.pid, signal.SIGKILL)
        self.victim.wait()
        self.killed.set()
        return True

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if not self.kill_after_accepting and self._kill_first_time():
            return "451 4.3.0 the client is gone anyway"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        if self.kill_after_accepting:
            self._kill_first_time()
        return "250 2.0.0 accepted"

    def replies_to(self, address: str) -> int:
        return sum(1 for _, recipients, _ in self.accepted if recipients == [address])


def queue_is_empty() -> bool:
    result = subprocess.run(
        ["/usr/sbin/postqueue", "-c", str(settings.POSTFIX_CONFIG_DIR), "-j"], capture_output=True, text=True
    )
    return result.returncode == 0 and not result.stdout.strip()


def mailbox_count(address: str) -> int:
    local, domain = address.split("@")
    new = Path(settings.STATE_DIR) / "mail" / domain / local / "new"
    return len(list(new.glob("*"))) if new.is_dir() else 0


@pytest.fixture
def vacationer(run_database: None, make_directory_user) -> Iterator[str]:
    """A mailbox with an active vacation reply in the run's database, published for the private Postfix."""
    user = make_directory_user()
    in_app(
        "from datetime import timedelta\nfrom django.utils import timezone\n"
        "from outofoffice.models import VacationReply\nfrom postfix.publication import publish\n"
        "now = timezone.now()\n"
        f"VacationReply.objects.create(uid='{user.uid}', address='{user.mail}', enabled=True,"
        " starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(days=2),"
        " subject='Away', body='I am away this week.')\n"
        "outcome = publish(force=True, coalesce=False)\n"
        "assert outcome.status in ('published', 'unchanged'), outcome.error\n"
    )
    Postfix().reload()
    try:
        yield user.mail
    finally:
        in_app(f"from outofoffice.models import VacationReply\nVacationReply.objects.filter(uid='{user.uid}').delete()")


def _responder(relay: Relay, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MAILADMIN_VACATION_SMTP_PORT": str(relay.port)}
    with log.open("a") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_responder", "--port", str(settings.RESPONDER_PORT)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert wait_until(lambda: port_open(settings.RESPONDER_PORT), 30), log.read_text()[-3000:]
    return process


def port_bindable(port: int) -> bool:
    """Whether a listener could bind the port now (as the responder does, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _submit(sender: str, recipient: str) -> None:
    raw = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: hello\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@test.example>\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT) as smtp:
        smtp.sendmail(sender, [recipient], raw.encode())


def _kill_responder_during_hand_over(vacationer: str, tmp_path: Path, kill_after_accepting: bool) -> int:
    """Replies the outside sender got after the responder was killed handing over one copy."""
    relay = Relay(kill_after_accepting)
    relay.controller.start()
    log = tmp_path / "responder.log"
    responder = _responder(relay, log)
    relay.victim = responder
    sender = f"erin{secrets.token_hex(3)}@remote.example"
    try:
        _submit(sender, vacationer)
        assert relay.killed.wait(60), log.read_text()[-3000:]
        # Postfix never got the responder's answer for the copy: it keeps it and retries.
        assert wait_until(lambda: not port_open(settings.RESPONDER_PORT), 10)
        responder = _responder(relay, log)
        assert wait_until(queue_is_empty, 90), log.read_text()[-3000:]
    finally:
        kill_group(responder)
        relay.controller.stop()
        # A killed responder's connections with Postfix linger a moment; the next test's
        # responder must find the port free.
        subprocess.run(["/usr/sbin/postfix", "-c", str(settings.POSTFIX_CONFIG_DIR), "flush"], capture_output=True)
        assert wait_until(lambda: port_bindable(settings.RESPONDER_PORT), 90)
    assert mailbox_count(vacationer) == 1  # the user's own copy, delivered once
    return relay.replies_to(sender)


def test_a_responder_killed_before_its_reply_is_out_answers_on_postfixs_retry(vacationer, tmp_path) -> None:
    assert _kill_responder_during_hand_over(vacationer, tmp_path, kill_after_accepting=False) == 1


def test_a_responder_killed_just_after_its_reply_is_out_does_not_reply_twice(vacationer, tmp_path) -> None:
    assert _kill_responder_during_hand_over(vacationer, tmp_path, kill_after_accepting=True) == 1
