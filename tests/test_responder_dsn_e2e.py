"""A vacation copy that the responder never takes, or refuses, tells the original sender nothing.

Through the private Postfix with the published maps and the hand-off of outofoffice/handoff.py:
the copy is retried while the responder is away, then dropped by Postfix with a log line;
no bounce or delay notice about it (which would name the routing address and the mailbox
behind it) ever leaves for the sender, and the user's own delivery is untouched. Every
message Postfix sends out goes to the "outside world" server, so a notice to the outside
sender would show up there — as the control case shows for an ordinary undeliverable message.
"""

import email
import re
import secrets
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from django.conf import settings

from localservices.outside import OutsideWorld
from localservices.postfix import Postfix
from localservices.process import port_open
from outofoffice.routing import routing_address
from tests import test_responder_e2e as responder_e2e

pytestmark = [pytest.mark.e2e]

# The vacation user (published into the maps) and the outside world, as the responder tests set them up.
on_vacation = responder_e2e.on_vacation
outside = responder_e2e.outside
queue_is_empty = responder_e2e.queue_is_empty
maillog = responder_e2e.maillog

TIMEOUT = 60.0  # seconds; the private Postfix retries every 2-10 s
POSTCONF = "/usr/sbin/postconf"


def eventually(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n--- maillog tail ---\n{maillog()[-4000:]}")
        time.sleep(0.2)


def queue_ids_for(recipient: str) -> set[str]:
    """Queue IDs of the entries that held `recipient` (as logged by the delivery agents)."""
    pattern = re.compile(rf"\b([0-9A-F]{{6,}}): to=<{re.escape(recipient)}>")
    return set(pattern.findall(maillog()))


def log_lines(queue_id: str) -> list[str]:
    return [line for line in maillog().splitlines() if f" {queue_id}: " in line]


def mailbox_count(address: str) -> int:
    local, domain = address.split("@")
    new = Path(settings.STATE_DIR) / "mail" / domain / local / "new"
    return len(list(new.glob("*"))) if new.is_dir() else 0


def sent_to(world: OutsideWorld, address: str) -> list[email.message.EmailMessage]:
    """Everything Postfix handed to the outside world for `address`."""
    found = [email.message_from_bytes(raw, policy=default) for raw in world.messages()]
    return [message for message in found if message["X-Envelope-To"] == f"<{address}>"]


def send(sender: str, recipient: str, subject: str) -> None:
    """Submit as an outside sender who asks for failure and delay notices (RFC 3461)."""
    headers = f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\nMessage-ID: <{secrets.token_hex(8)}@test>"
    raw = f"{headers}\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT) as smtp:
        smtp.sendmail(sender, [recipient], raw.encode(), rcpt_options=["NOTIFY=FAILURE,DELAY"])


def postconf(*assignments: str) -> None:
    subprocess.run([POSTCONF, "-c", str(settings.POSTFIX_CONFIG_DIR), "-e", *assignments], check=True)
    Postfix().reload()


@pytest.fixture
def responder_away() -> None:
    assert not port_open(settings.RESPONDER_PORT), "a responder is listening; these tests need it away"


@pytest.fixture
def short_queue_lifetime() -> Iterator[None]:
    """Queue entries expire after 6 s and delay notices go out after 1 s (the defaults again after)."""
    postconf("maximal_queue_lifetime=6s", "delay_warning_time=1s")
    try:
        yield
    finally:
        postconf("maximal_queue_lifetime=5d", "delay_warning_time=0h")


class RefusingHandler:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        return "550 5.7.1 refused for this test"


class RefusingResponder(Controller):
    """An LMTP server on the responder's port that refuses every copy for good."""

    def __init__(self) -> None:
        super().__init__(RefusingHandler(), hostname="127.0.0.1", port=settings.RESPONDER_PORT, ready_timeout=10)

    def factory(self) -> LMTP:
        return LMTP(self.handler)


def assert_nothing_told_the_sender(world: OutsideWorld, sender: str, copy_ids: set[str]) -> None:
    assert sent_to(world, sender) == []
    assert not any(settings.VACATION_ROUTING_DOMAIN.encode() in raw for raw in world.messages())
    for queue_id in copy_ids:
        notices = [line for line in log_lines(queue_id) if "notification" in line]
        assert notices == [], notices


def test_a_copy_the_responder_never_takes_is_retried_then_dropped_without_a_notice(
    responder_away, on_vacation, outside, short_queue_lifetime
):
    sender = f"carol{secrets.token_hex(3)}@remote.example"
    send(sender, on_vacation.mail, "while the responder is down")
    eventually("the message in the user's mailbox", lambda: mailbox_count(on_vacation.mail) == 1)
    eventually("the copy to expire and leave the queue", queue_is_empty)

    copy_ids = queue_ids_for(routing_address(on_vacation.mail))
    [copy_id] = copy_ids
    attempts = [line for line in log_lines(copy_id) if "status=deferred" in line]
    assert len(attempts) >= 2  # retried, not given up on at the first refusal
    assert any("status=expired" in line for line in log_lines(copy_id))
    assert_nothing_told_the_sender(outside, sender, copy_ids)
    assert mailbox_count(on_vacation.mail) == 1  # the user got the mail, and nothing about the copy


def test_a_copy_the_responder_refuses_for_good_is_dropped_without_a_notice(responder_away, on_vacation, outside):
    refusing = RefusingResponder()
    refusing.start()
    try:
        sender = f"dave{secrets.token_hex(3)}@remote.example"
        send(sender, on_vacation.mail, "refused copy")
        eventually("the message in the user's mailbox", lambda: mailbox_count(on_vacation.mail) == 1)
        eventually("the copy to be refused and leave the queue", queue_is_empty)
    finally:
        refusing.stop()

    copy_ids = queue_ids_for(routing_address(on_vacation.mail))
    [copy_id] = copy_ids
    assert any("status=bounced" in line and "550 5.7.1 refused" in line for line in log_lines(copy_id))
    assert_nothing_told_the_sender(outside, sender, copy_ids)
    assert mailbox_count(on_vacation.mail) == 1


def test_an_ordinary_undeliverable_message_still_bounces_to_its_sender(on_vacation, outside):
    sender = f"erin{secrets.token_hex(3)}@remote.example"
    send(sender, f"nosuch{secrets.token_hex(3)}@remote.example", "to nobody")
    eventually("the bounce at the sender", lambda: len(sent_to(outside, sender)) == 1)
    [bounce] = sent_to(outside, sender)
    assert bounce["Return-Path"] == "<>"
    assert "MAILER-DAEMON" in bounce["From"]
