import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from policy.service import PolicyService


async def _run(host: str, port: int) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM (systemd, the demo) stops like Ctrl-C: the counts since the last flush are written.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await PolicyService().run(host, port)
    except asyncio.CancelledError:
        pass


class Command(BaseCommand):
    help = "Run the Postfix policy service (sender blocks, alias activity) on loopback until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.POLICY_HOST)
        parser.add_argument("--port", type=int, default=settings.POLICY_PORT)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        try:
            asyncio.run(_run(host, port))
        except KeyboardInterrupt:
            pass
