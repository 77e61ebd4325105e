"""Follow this host's Postfix log into the delivery trail (long-running; systemd restarts it)."""

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from trail import services


class Command(BaseCommand):
    help = "Follow the Postfix log (MAILADMIN_MAILLOG_FILE) into delivery-trail records."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="read what is there now, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            follower = services.Follower()
            try:
                follower.catch_up()
            finally:
                follower.close()
            self.stdout.write(f"{follower.lines} lines read, {follower.records} records stored")
            return
        stopping: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: stopping.append(number))
        self.stdout.write(f"following {settings.MAILLOG_FILE}")
        services.follow(stop=lambda: bool(stopping), poll_seconds=settings.MAILLOG_POLL_MS / 1000)
