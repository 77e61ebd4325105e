"""Vacation replies through the private Postfix, the responder and the "outside world" server.

The maps come from the real publication (postfix.publication); Postfix delivers the mailbox
copy itself and hands a second copy to the responder over LMTP.
"""

import email
import secrets
import smtplib
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from email.policy import default
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from localservices.outside import OutsideWorld
from localservices.postfix import Postfix
from outofoffice.models import ReplyLog, VacationReply
from outofoffice.responder import ResponderThread
from postfix.publication import publish

pytestmark = [pytest.mark.e2e]

TIMEOUT = 40.0  # seconds; Postfix here retries every 2-10 s


def wait_for(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def queue_is_empty() -> bool:
    result = subprocess.run(
        ["/usr/sbin/postqueue", "-c", str(settings.POSTFIX_CONFIG_DIR), "-j"], capture_output=True, text=True
    )
    return result.returncode == 0 and not result.stdout.strip()


def copies_at_responder(mailbox: str, status: str = "sent") -> int:
    """Postfix's attempts to hand this mailbox's copies to the responder that ended in `status`."""
    local, domain = mailbox.split("@")
    routing = f"to=<{local}={domain}@{settings.VACATION_ROUTING_DOMAIN}>"
    return sum(1 for line in maillog().splitlines() if routing in line and f"status={status}" in line)


def maillog() -> str:
    return (Path(settings.STATE_DIR) / "postfix" / "maillog").read_text(errors="replace")


def mailbox_messages(address: str) -> list[bytes]:
    local, domain = address.split("@")
    new = Path(settings.STATE_DIR) / "mail" / domain / local / "new"
    return [path.read_bytes() for path in sorted(new.glob("*"))] if new.is_dir() else []


def replies_to(outside: OutsideWorld, address: str) -> list[email.message.EmailMessage]:
    found = [email.message_from_bytes(raw, policy=default) for raw in outside.messages()]
    return [message for message in found if message["X-Envelope-To"] == f"<{address}>"]


def submit(sender: str, recipient: str, headers: dict[str, str], body: str) -> None:
    lines = [f"{name}: {value}" for name, value in headers.items()]
    raw = "\r\n".join([*lines, f"Message-ID: <{secrets.token_hex(8)}@test.example>", "", body, ""])
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT) as smtp:
        smtp.sendmail(sender, [recipient], raw.encode())


@pytest.fixture
def outside(transactional_db):
    world = OutsideWorld().start()
    yield world
    world.stop()


@pytest.fixture
def responder(transactional_db):
    running = ResponderThread().start()
    yield running
    running.stop()


@pytest.fixture
def on_vacation(transactional_db, make_directory_user, outside):
    """A directory user with an active vacation reply, published into the Postfix maps."""
    user = make_directory_user(role="end user")
    now = timezone.now()
    VacationReply.objects.create(
        uid=user.uid,
        address=user.mail,
        enabled=True,
        starts_at=now - timedelta(minutes=5),
        ends_at=now + timedelta(days=2),
        subject="Away this week",
        body="I am away this week.",
    )
    outcome = publish(force=True, coalesce=False)
    assert outcome.status in ("published", "unchanged"), outcome.error
    Postfix().reload()
    return user


SECRET = "quarterly figures: 4711-do-not-share"


def test_a_bounce_of_the_users_own_mistyped_mail_reaches_them_and_gets_no_reply(on_vacation, responder, outside):
    typo = f"nosuch{secrets.token_hex(3)}@remote.example"
    submit(on_vacation.mail, typo, {"From": on_vacation.mail, "To": typo, "Subject": "figures"}, SECRET)

    def bounced() -> bool:
        return any(b"MAILER-DAEMON" in raw and SECRET.encode() in raw for raw in mailbox_messages(on_vacation.mail))

    wait_for("the bounce in the user's mailbox", bounced)
    wait_for("the bounce's copy at the responder", lambda: copies_at_responder(on_vacation.mail) == 1)
    wait_for("Postfix to hand every copy over", queue_is_empty)
    sent_out = [email.message_from_bytes(raw, policy=default) for raw in outside.messages()]
    assert [message for message in sent_out if message["From"] == on_vacation.mail] == []
    assert not ReplyLog.objects.exists()


def test_an_outside_sender_gets_exactly_one_reply_without_any_of_the_original(on_vacation, responder, outside):
    sender = f"carol{secrets.token_hex(3)}@remote.example"
    for n in range(2):
        submit(sender, on_vacation.mail, {"From": sender, "To": on_vacation.mail, "Subject": SECRET}, f"{SECRET} {n}")
    wait_for("both messages in the mailbox", lambda: len(mailbox_messages(on_vacation.mail)) == 2)
    wait_for("the reply", lambda: len(replies_to(outside, sender)) >= 1)
    wait_for("both copies at the responder", lambda: copies_at_responder(on_vacation.mail) == 2)
    wait_for("Postfix to hand every copy over", queue_is_empty)
    [reply] = replies_to(outside, sender)
    assert reply["Return-Path"] == "<>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Subject"] == "Auto: Away this week"
    assert reply.get_content().startswith("I am away this week.")
    assert "4711" not in reply.as_string()


@pytest.mark.parametrize(
    "headers",
    [{"List-Id": "<staff.lists.remote.example>"}, {"Auto-Submitted": "auto-generated"}, {"Precedence": "bulk"}],
    ids=["list", "auto-submitted", "bulk"],
)
def test_list_automatic_and_bulk_mail_reaches_the_mailbox_and_gets_no_reply(on_vacation, responder, outside, headers):
    sender = f"news{secrets.token_hex(3)}@remote.example"
    submit(sender, on_vacation.mail, {"From": sender, "To": on_vacation.mail, "Subject": "news", **headers}, "news")
    wait_for("the message in the mailbox", lambda: len(mailbox_messages(on_vacation.mail)) == 1)
    wait_for("the copy at the responder", lambda: copies_at_responder(on_vacation.mail) == 1)
    wait_for("Postfix to hand every copy over", queue_is_empty)
    assert replies_to(outside, sender) == []


def test_while_the_responder_is_down_mail_is_delivered_and_the_reply_follows_once_it_is_back(on_vacation, outside):
    sender = f"dave{secrets.token_hex(3)}@remote.example"
    submit(sender, on_vacation.mail, {"From": sender, "To": on_vacation.mail, "Subject": "hello"}, "hello")
    wait_for("the message in the mailbox", lambda: len(mailbox_messages(on_vacation.mail)) == 1)
    wait_for("the copy to be deferred", lambda: copies_at_responder(on_vacation.mail, "deferred") >= 1)
    assert not queue_is_empty()
    assert replies_to(outside, sender) == []
    running = ResponderThread().start()
    try:
        wait_for("the retried copy to be answered", lambda: len(replies_to(outside, sender)) >= 1)
        wait_for("Postfix to hand every copy over", queue_is_empty)
    finally:
        running.stop()
    assert copies_at_responder(on_vacation.mail) == 1
    assert len(replies_to(outside, sender)) == 1
    assert len(mailbox_messages(on_vacation.mail)) == 1
