"""Outbound limits end to end: the private Postfix asks the policy service (in this process) at
every RCPT; a local sender past the soft limit is deferred, past the hard one suspended, refused
at MAIL FROM for every address they may send as, and told by mail with the admins; lifting the
suspension restores sending."""

import secrets
import smtplib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import override_settings

from accounts import suspension
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from policy.service import PolicyThread
from postfix import publication
from tests.test_second_factor import delivered_message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
T = TypeVar("T")

SMALL = {
    "LIMIT_MESSAGES_PER_HOUR": 1000,
    "LIMIT_RECIPIENTS_PER_HOUR": 20,
    "LIMIT_RECIPIENTS_PER_DAY": 1000,
    "LIMIT_RECIPIENTS_PER_MESSAGE": 50,
    "LIMIT_HARD_FACTOR": 3,
    "POSTFIX_RELOAD_MIN_INTERVAL": 0,
}


@pytest.fixture
def policy() -> Iterator[PolicyThread]:
    with override_settings(**SMALL):
        running = PolicyThread().start()
        yield running
        running.stop()


def retrying(work: Callable[[], T]) -> T:
    """The test database is SQLite in memory with a shared cache: a table another thread (the
    policy service's refresh, flush or suspension worker) is using refuses at once with "table
    is locked" instead of waiting, so the test's own reads and writes try again."""
    for attempt in range(20):
        try:
            return work()
        except (OperationalError, suspension.SuspensionBusy):
            if attempt == 19:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def publish() -> None:
    retrying(lambda: publication.request_publication("test"))
    outcome = retrying(lambda: publication.publish(coalesce=False))
    assert outcome.status in ("published", "unchanged"), outcome.error


def message(sender: str, recipients: list[str]) -> tuple[int, list[int]]:
    """One mail transaction without DATA: (MAIL FROM code, each RCPT's code)."""
    with smtplib.SMTP("127.0.0.1", settings.SMTP_PORT, timeout=30) as smtp:
        smtp.ehlo("tests.example")
        code, _ = smtp.mail(sender)
        if code != 250:
            return code, []
        replies = [smtp.rcpt(recipient) for recipient in recipients]
        smtp.rset()
    return code, [code for code, _ in replies]


def test_a_flood_is_deferred_then_suspended_everyone_is_told_and_lifting_restores_sending(
    policy, make_directory_user
) -> None:
    person = make_directory_user()
    admin = make_directory_user(role="admin")
    domain, _ = Domain.objects.get_or_create(name=f"out{secrets.token_hex(3)}.example.org", is_alias_domain=True)
    alias = Alias.objects.create(
        owner=User.objects.get_or_create(username=person.uid)[0], local_part="shopcom", domain=domain
    )
    publish()

    codes: list[int] = []
    for n in range(10):
        mail_from, replies = message(person.mail, [f"r{n}-{i}@remote.example" for i in range(10)])
        codes.extend(replies if mail_from == 250 else [mail_from] * 10)
    assert codes[:20] == [250] * 20
    assert codes[20:60] == [451] * 40
    assert set(codes[60:]) == {554}

    deadline = time.monotonic() + 5
    while not retrying(lambda: suspension.is_suspended(person.uid)):
        assert time.monotonic() < deadline, "the suspension was never recorded"
        time.sleep(0.05)
    row = retrying(lambda: SenderSuspension.objects.active().get(uid=person.uid))
    assert row.created_by_name == "system" and row.reason.startswith("automatic: 61 recipients in 1 hour")
    publish()  # the sender_access map (the worker does this in production)
    assert message(person.mail, ["x@remote.example"])[0] == 554
    assert message(alias.address, ["x@remote.example"])[0] == 554

    told = delivered_message(person.mail)
    assert "Sending mail from your account is suspended" in told and "Return-Path: <>" in told
    assert "automatic: 61 recipients" in delivered_message(admin.mail)

    retrying(lambda: suspension.reinstate(person.uid, actor=None))
    publish()
    deadline = time.monotonic() + 10  # the service reads lifted suspensions every 5 s
    while message(person.mail, ["back@remote.example"]) != (250, [250]):
        assert time.monotonic() < deadline, "sending was not restored"
        time.sleep(0.2)
    assert message(alias.address, ["back@remote.example"]) == (250, [250])
