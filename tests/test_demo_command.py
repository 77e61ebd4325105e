"""The demo command as a person runs it: started in the background by a shell (which starts
background jobs with SIGINT ignored), `kill -INT` still stops it and everything it started."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from localservices.__main__ import PORT_VARIABLES
from localservices.process import free_port, port_open

pytestmark = pytest.mark.e2e


def processes_of(state: Path) -> list[str]:
    """The command lines of live processes whose environment names this state directory."""
    marker = f"MAILADMIN_STATE_DIR={state}\0".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            # (A zombie's environment reads empty: only processes still running are found.)
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile
            continue
    return found


def test_a_demo_started_in_the_background_stops_on_sigint(tmp_path) -> None:
    # Under the run's state directory: Postfix's master, running as postfix, must reach its data
    # directory, and pytest's tmp_path sits below a directory only root may enter.
    state = settings.STATE_DIR / f"demo-{tmp_path.name}"
    env = dict(os.environ, MAILADMIN_STATE_DIR=str(state))
    ports = {name: free_port() for name in PORT_VARIABLES}
    env.update({f"MAILADMIN_{name}": str(port) for name, port in ports.items()})
    demo = subprocess.Popen(
        [sys.executable, "-m", "localservices", "demo"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509 -- as bash does
    )
    try:
        deadline = time.monotonic() + 120
        while not (port_open(ports["WEB_PORT"]) and port_open(ports["POLICY_PORT"])):
            assert demo.poll() is None, demo.stdout.read() if demo.stdout else ""
            assert time.monotonic() < deadline, "the demo did not come up"
            time.sleep(0.5)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        assert not port_open(ports["WEB_PORT"]) and not port_open(ports["LDAP_PORT"])
        assert not port_open(ports["SMTP_PORT"]) and not port_open(ports["POLICY_PORT"])
        # Nothing it started is left running (the worker has no port to look at).
        deadline = time.monotonic() + 5
        while (left := processes_of(state)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
