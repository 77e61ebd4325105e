"""Run the project's private services.

python -m localservices test [-- pytest args]   fresh state dir and free ports, run the suite
python -m localservices demo                    the demo: services, web, worker, responder
python -m localservices stop                    stop the demo's daemons (after a crash)
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PORT_VARIABLES = (
    "LDAP_PORT",
    "REDIS_PORT",
    "SMTP_PORT",
    "OUTSIDE_SMTP_PORT",
    "RESPONDER_PORT",
    "VACATION_HANDOFF_PORT",
    "WEB_PORT",
    "POLICY_PORT",
)


def _test_environment() -> Path:
    from localservices.process import free_port

    (BASE_DIR / "var").mkdir(exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="test-", dir=BASE_DIR / "var"))
    state_dir.chmod(0o755)  # the postfix user must reach its data directory
    os.environ["MAILADMIN_STATE_DIR"] = str(state_dir)
    for name in PORT_VARIABLES:
        os.environ[f"MAILADMIN_{name}"] = str(free_port())
    if _postgres_requested():
        os.environ["MAILADMIN_POSTGRES_PORT"] = str(free_port())
    return state_dir


def _postgres_requested() -> bool:
    # MAILADMIN_TEST_DATABASE=postgresql: also start a private PostgreSQL and point the app at it.
    choice = os.environ.get("MAILADMIN_TEST_DATABASE", "sqlite")
    if choice not in ("sqlite", "postgresql"):
        raise SystemExit(f"MAILADMIN_TEST_DATABASE must be sqlite or postgresql, not {choice!r}")
    return choice == "postgresql"


def _daemons() -> list:  # type: ignore[type-arg]
    from localservices.postfix import Postfix
    from localservices.redis import Redis
    from localservices.slapd import Slapd

    slapd = Slapd()
    os.environ.update(slapd.env())
    daemons: list = [slapd, Redis(), Postfix()]  # type: ignore[type-arg]
    if _postgres_requested():
        from localservices.postgres import Postgres

        daemons.insert(0, Postgres())
    return daemons


def _start(daemons: list) -> None:  # type: ignore[type-arg]
    for daemon in daemons:
        daemon.start()
        if hasattr(daemon, "database_url"):
            os.environ["MAILADMIN_DATABASE_URL"] = daemon.database_url()


def _stop(daemons: list) -> None:  # type: ignore[type-arg]
    for daemon in reversed(daemons):
        try:
            daemon.stop()
        except Exception as exc:  # keep stopping the others
            print(f"localservices: stopping {type(daemon).__name__}: {exc}", file=sys.stderr)


def run_with_services(argv: list[str]) -> int:
    state_dir = _test_environment()
    daemons = _daemons()
    try:
        _start(daemons)
        result = subprocess.run(argv, cwd=BASE_DIR)
    finally:
        _stop(daemons)
    if result.returncode == 0:
        shutil.rmtree(state_dir, ignore_errors=True)
    else:
        print(f"localservices: state of the failed run kept in {state_dir}", file=sys.stderr)
    return result.returncode


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], cwd=BASE_DIR, check=True)


def run_demo() -> int:
    from mailadmin import settings

    settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
    daemons = _daemons()
    children: list[subprocess.Popen[bytes]] = []

    def shutdown(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
            # The rest of its group too: a leader can exit before a process it forked (Celery's
            # beat or pool), and a process still starting up can miss the TERM.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        _stop(daemons)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A job started in the background by a shell inherits SIGINT ignored: install the handler
    # explicitly, so that Ctrl-C and `kill -INT` stop the demo either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _start(daemons)
        _manage("migrate", "--noinput", "-v", "0")
        _manage("seed_demo")
        # The first publication: Postfix answers for the demo domains as soon as it starts.
        _manage("publish_maps")
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{settings.WEB_PORT}"],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "mailadmin",
                "worker",
                "-B",
                "-l",
                "INFO",
                "-c",
                "2",
                "-s",
                str(settings.STATE_DIR / "celerybeat-schedule"),
            ],
            "responder": [python, "manage.py", "run_responder"],
            "trail": [python, "manage.py", "follow_maillog"],
            "policy": [python, "manage.py", "run_policy"],
            "outside": [python, "-m", "localservices.outside"],
        }
        for argv in commands.values():
            children.append(subprocess.Popen(argv, cwd=BASE_DIR, start_new_session=True))
        print(f"\nmailadmin demo: http://127.0.0.1:{settings.WEB_PORT}/  (Ctrl-C stops everything)", flush=True)
        print(f"(passkeys need a host name: http://localhost:{settings.WEB_PORT}/)\n", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("localservices: a demo process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        shutdown()


def stop_demo() -> int:
    _stop(_daemons())
    return 0


def main(argv: list[str]) -> int:
    # Debug pages are off unless asked for (production); the demo and test runs want them.
    os.environ.setdefault("MAILADMIN_DEBUG", "1")
    if not argv or argv[0] not in ("test", "run", "demo", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    rest = argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if argv[0] == "test":
        return run_with_services([sys.executable, "-m", "pytest", *rest])
    if argv[0] == "run":
        return run_with_services(rest)
    if argv[0] == "demo":
        return run_demo()
    return stop_demo()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
