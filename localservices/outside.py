"""The "outside world": an SMTP server on OUTSIDE_SMTP_PORT that the private Postfix relays
all non-local mail to. It keeps every message in a Maildir under <state>/mail/outside/ and
refuses recipients whose local part starts with "nosuch", so that bounces can be produced.

python -m localservices.outside    (the demo runs it; tests start OutsideWorld in a thread)
"""

import logging
import mailbox
import os
import signal
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger("localservices.outside")


def maildir_path() -> Path:
    from mailadmin import settings

    return settings.STATE_DIR / "mail" / "outside"


class OutsideHandler:
    def __init__(self, path: Path) -> None:
        self.maildir = mailbox.Maildir(path, create=True)
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.lower().startswith("nosuch"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Record the envelope as Postfix would (Return-Path, X-Original-To) above the message.
        sender = (envelope.mail_from or "").strip("<>")  # aiosmtpd reports the null sender as "<>"
        trace = f"Return-Path: <{sender}>\r\n".encode() + b"".join(
            f"X-Envelope-To: <{rcpt}>\r\n".encode() for rcpt in envelope.rcpt_tos
        )
        with self._lock:
            self.maildir.add(trace + envelope.original_content)
        return "250 2.0.0 stored"


class OutsideWorld:
    def __init__(self, port: int | None = None, path: Path | None = None) -> None:
        from mailadmin import settings

        self.port = port or settings.OUTSIDE_SMTP_PORT
        self.path = path or maildir_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.controller = Controller(
            OutsideHandler(self.path),
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="outside.example",
            ready_timeout=10,
        )

    def start(self) -> "OutsideWorld":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[bytes]:
        box = mailbox.Maildir(self.path, create=True)
        return [box.get_bytes(key) for key in sorted(box.keys())]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailadmin.settings")
    outside = OutsideWorld().start()
    log.info("outside world listening on 127.0.0.1:%s, storing mail in %s", outside.port, outside.path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    outside.stop()


if __name__ == "__main__":
    main()
