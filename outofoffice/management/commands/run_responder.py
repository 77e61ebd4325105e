import asyncio
import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from outofoffice.responder import serve


class Command(BaseCommand):
    help = "Run the vacation responder (LMTP on loopback) until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.RESPONDER_HOST)
        parser.add_argument("--port", type=int, default=settings.RESPONDER_PORT)
        parser.add_argument("--workers", type=int, default=settings.RESPONDER_WORKERS)

    def handle(self, *args: Any, host: str, port: int, workers: int, **options: Any) -> None:
        if not 1 <= workers <= 256:
            raise ValueError("--workers must be between 1 and 256")
        # aiosmtpd logs every recipient at INFO; our own decision log says more, once.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            asyncio.run(serve(host, port, workers))
        except KeyboardInterrupt:
            pass
