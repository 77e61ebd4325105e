"""A private redis-server (the Celery broker)."""

from localservices.process import read_pid, run, stop_pid, wait_for_port, wait_for_port_closed
from mailadmin import settings


class Redis:
    def __init__(self) -> None:
        self.state_dir = settings.STATE_DIR / "redis"
        self.port = settings.REDIS_PORT
        self.pidfile = self.state_dir / "redis.pid"

    def start(self) -> None:
        if read_pid(self.pidfile) is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        run(
            [
                "/usr/bin/redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--dir",
                str(self.state_dir),
                "--logfile",
                str(self.state_dir / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]
        )
        wait_for_port(self.port, "redis-server")

    def stop(self) -> None:
        stop_pid(self.pidfile)
        wait_for_port_closed(self.port)
