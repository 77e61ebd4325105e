"""A private PostgreSQL 15 server (Debian's package) for running the suite on PostgreSQL.

Started by `python -m localservices test` when MAILADMIN_TEST_DATABASE=postgresql. PostgreSQL
refuses to run as root, so as root its programs run as the `postgres` system user, with the
data directory under the state dir owned by that user. It listens on 127.0.0.1 only, with its
unix socket in the state dir, and trades durability for speed (fsync off): test data only.
"""

import os
import pwd
import secrets
import shutil
from pathlib import Path

from localservices.process import ServiceError, port_open, run, wait_for_port, wait_for_port_closed
from mailadmin import settings

BIN = Path("/usr/lib/postgresql/15/bin")
SYSTEM_USER = "postgres"
ROLE = "mailadmin"
DATABASE = "mailadmin"


class Postgres:
    def __init__(self) -> None:
        self.state_dir = settings.STATE_DIR / "postgres"
        self.data_dir = self.state_dir / "data"
        self.socket_dir = self.state_dir / "run"
        self.log_file = self.state_dir / "postgres.log"
        self.password_file = settings.STATE_DIR / "secrets" / "postgres-password"
        self.port = int(os.environ.get("MAILADMIN_POSTGRES_PORT", "5433"))

    def _as_owner(self, argv: list[str]) -> list[str]:
        # As root, run as the postgres system user; as anyone else, as oneself.
        if os.geteuid() == 0:
            return ["runuser", "-u", SYSTEM_USER, "--", *argv]
        return argv

    def _owner_ids(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return os.geteuid(), os.getegid()
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ServiceError("no 'postgres' system user: run scripts/install-deps") from None
        return entry.pw_uid, entry.pw_gid

    def _psql(self, sql: str) -> None:
        run(
            self._as_owner(
                [str(BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir)]
                + ["-p", str(self.port), "-U", SYSTEM_USER, "-d", "postgres", "-c", sql]
            )
        )

    def initialise(self) -> bool:
        """Create the cluster once; True when it is new (role and database still to create)."""
        if (self.data_dir / "PG_VERSION").exists():
            return False
        if not (BIN / "initdb").exists():
            raise ServiceError(f"{BIN / 'initdb'} not found: install Debian's postgresql (scripts/install-deps)")
        uid, gid = self._owner_ids()
        for directory in (self.state_dir, self.data_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, uid, gid)
        self.data_dir.chmod(0o700)
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        run(
            self._as_owner(
                [str(BIN / "initdb"), "-D", str(self.data_dir), "-U", SYSTEM_USER, "-E", "UTF8", "--locale=C.UTF-8"]
                + ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
            )
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# localservices: a throw-away test server\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
            )
        return True

    def start(self) -> None:
        if port_open(self.port):
            return
        fresh = self.initialise()
        run(
            self._as_owner(
                [str(BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "30"]
                + ["-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1", "start"]
            )
        )
        wait_for_port(self.port, "postgres")
        if fresh:
            password = self.password_file.read_text().strip()
            # CREATEDB: pytest-django creates and drops its own test_mailadmin database.
            self._psql(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}'")
            self._psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        run(self._as_owner([str(BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]))
        wait_for_port_closed(self.port)

    def database_url(self) -> str:
        password = self.password_file.read_text().strip()
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{DATABASE}"

    def remove(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)
