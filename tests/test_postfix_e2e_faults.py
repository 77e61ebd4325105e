"""Publication survives a broker that was down: a real Celery worker (with beat), the real
Redis stopped and started again, the real Postfix answering at the end.

The worker is a separate process, so this test works in the run's own database file
(STATE_DIR/mailadmin.sqlite3), not in pytest's test database."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from localservices.redis import Redis

pytestmark = pytest.mark.e2e


def manage_shell(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def live_target(address: str) -> str:
    """What the Postfix virtual table answers for an address ("" when it has no entry)."""
    table = f"{settings.POSTFIX_MAP_TYPE}:{Path(settings.POSTFIX_MAP_DIR) / 'virtual'}"
    argv = [settings.POSTMAP_COMMAND, "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", address, table]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.25)
    return False


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Path]:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=settings.BASE_DIR, check=True)
    log = tmp_path / "worker.log"
    env = {**os.environ, "MAILADMIN_MAP_RECONCILE_INTERVAL": "2", "MAILADMIN_POSTFIX_RELOAD_MIN_INTERVAL": "0"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mailadmin", "worker", "-B", "-P", "solo", "-l", "INFO",
             "-s", str(tmp_path / "beat-schedule"), "--without-mingle", "--without-gossip"],
            cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        assert wait_until(lambda: "ready" in log.read_text(), 60), log.read_text()[-3000:]
        yield log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        Redis().start()  # whatever happened, leave the broker running for the other tests


def test_alias_saved_while_redis_was_down_goes_live_once_redis_is_back(worker: Path, make_directory_user) -> None:
    make_directory_user(uid="faultowner", mail="faultowner@example.org")  # alias targets come from the directory
    manage_shell(
        "from aliases.models import Domain; from django.contrib.auth.models import User\n"
        "Domain.objects.get_or_create(name='faults.example.org', defaults={'is_alias_domain': True})\n"
        "User.objects.get_or_create(username='faultowner', defaults={'email': 'faultowner@example.org'})\n"
    )
    redis = Redis()
    redis.stop()
    try:
        manage_shell(
            "from django.db import transaction\n"
            "from aliases.models import Alias, Domain\nfrom django.contrib.auth.models import User\n"
            "from postfix.publication import request_publication\n"
            "with transaction.atomic():\n"
            "    Alias.objects.create(owner=User.objects.get(username='faultowner'), local_part='whiledown',"
            " domain=Domain.objects.get(name='faults.example.org'))\n"
            "    request_publication('test: created while redis was down', keys=['whiledown@faults.example.org'])\n"
        )
        assert live_target("whiledown@faults.example.org") == ""
    finally:
        redis.start()

    # Nobody acts: the worker reconnects and its periodic reconcile publishes the change.
    live = wait_until(lambda: live_target("whiledown@faults.example.org") == "faultowner@example.org", 60)
    assert live, worker.read_text()[-3000:]
    out = manage_shell(
        "from postfix.models import MapGeneration, MapPublication\n"
        "states = MapPublication.objects.values_list('published_generation', 'last_error')\n"
        "print(MapGeneration.objects.get().requested, list(states))"
    )
    requested, states = out.strip().splitlines()[-1].split(" ", 1)
    assert states == f"[({requested}, '')]"  # published up to the last change, no error left
