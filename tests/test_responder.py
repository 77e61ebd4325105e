"""The responder over LMTP, in this process, handing replies to a capturing SMTP server.

The capture stands in for Postfix here (the boundary of the project); the end-to-end tests in
test_responder_e2e.py run the same path through the private Postfix.
"""

import asyncio
import email
import logging
import smtplib
import socket
import threading
from datetime import datetime, timedelta
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.contrib.auth.models import User
from django.db import OperationalError, connections
from django.utils import timezone

from accounts import directory
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from localservices.outside import OutsideWorld
from localservices.process import free_port
from outofoffice import responder as responder_module
from outofoffice.models import ReplyLog, VacationReply
from outofoffice.replies import ReplyRecord
from outofoffice.responder import ResponderThread
from outofoffice.routing import routing_address

USER = "alice@example.org"
SECRET = "the-original-secret-text-4711"


@pytest.fixture
def capture(tmp_path, settings):
    outside = OutsideWorld(port=free_port(), path=tmp_path / "captured").start()
    settings.VACATION_SMTP_PORT = outside.port
    yield outside
    outside.stop()


@pytest.fixture
def responder(transactional_db, capture):
    running = ResponderThread().start()
    yield running
    running.stop()


@pytest.fixture
def vacation(transactional_db) -> VacationReply:
    now = timezone.now()
    return VacationReply.objects.create(
        uid="alice",
        address=USER,
        enabled=True,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=3),
        subject="Away until Friday",
        body="I am away until Friday and read no mail.",
        internal_body="Colleagues: see my handover note.",
        delegate="Bob Baker <bob@example.org>",
    )


def message(sender: str = "carol@remote.example", *extra: str, to: str = USER) -> bytes:
    lines = [
        f"From: Carol <{sender}>",
        f"To: {to}",
        f"Subject: Re: {SECRET}",
        "Message-ID: <abc.123@remote.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b1"',
        *extra,
        "",
        "--b1",
        "Content-Type: text/plain",
        "",
        f"> quoted {SECRET}",
        f"body {SECRET}",
        "--b1",
        'Content-Type: application/octet-stream; name="secret.bin"',
        "Content-Transfer-Encoding: base64",
        "",
        "dGhlLW9yaWdpbmFsLXNlY3JldC10ZXh0LTQ3MTE=",
        "--b1--",
        "",
    ]
    return "\r\n".join(lines).encode()


def deliver(sender: str, raw: bytes, *recipients: str) -> list[tuple[int, bytes]]:
    """One LMTP transaction; the status of each recipient after DATA, in order."""
    with smtplib.LMTP(settings.RESPONDER_HOST, settings.RESPONDER_PORT) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        assert lmtp.mail(sender)[0] == 250
        for rcpt in recipients:
            assert lmtp.rcpt(rcpt)[0] == 250
        statuses = [lmtp.data(raw)]
        statuses += [lmtp.getreply() for _ in recipients[1:]]
    return statuses


def replies(capture: OutsideWorld) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(raw, policy=default) for raw in capture.messages()]


def test_an_outside_sender_gets_one_reply_made_only_of_the_users_text(responder, capture, vacation):
    statuses = deliver("carol@remote.example", message(), routing_address(USER))
    assert statuses[0][0] == 250
    [reply] = replies(capture)
    raw = capture.messages()[0]
    assert reply["Return-Path"] == "<>"
    assert reply["X-Envelope-To"] == "<carol@remote.example>"
    assert reply["To"] == "carol@remote.example"
    assert reply["From"] == USER
    assert reply["Subject"] == "Auto: Away until Friday"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<abc.123@remote.example>"
    assert reply["References"] == "<abc.123@remote.example>"
    assert reply["X-Mailadmin-Vacation"]
    assert reply.get_content_type() == "text/plain"
    body = reply.get_content()
    assert "I am away until Friday" in body
    assert "In urgent matters please contact: Bob Baker <bob@example.org>" in body
    assert "handover" not in body  # the internal text is for colleagues only
    assert SECRET.encode() not in raw and b"dGhlLW9yaWdpbmFs" not in raw
    assert ReplyLog.objects.filter(vacation=vacation, sender="carol@remote.example").count() == 1


def test_the_same_sender_gets_no_second_reply_within_the_interval(responder, capture, vacation):
    for _ in range(3):
        assert deliver("carol@remote.example", message(), routing_address(USER))[0][0] == 250
    assert len(capture.messages()) == 1


def test_colleagues_get_the_internal_text(responder, capture, vacation):
    deliver("dave@example.org", message("dave@example.org"), routing_address(USER))
    [reply] = replies(capture)
    assert "Colleagues: see my handover note." in reply.get_content()
    assert "I am away until Friday" not in reply.get_content()


def test_a_bounce_gets_no_reply(responder, capture, vacation):
    assert deliver("", message("MAILER-DAEMON@mx.remote.example"), routing_address(USER))[0][0] == 250
    assert capture.messages() == []


def test_when_the_reply_cannot_be_handed_over_the_copy_is_deferred_and_retried_once(
    responder, capture, vacation, settings
):
    settings.VACATION_SMTP_PORT = free_port()  # nothing listens: Postfix "down"
    [(code, text)] = deliver("carol@remote.example", message(), routing_address(USER))
    assert code == 451
    assert not ReplyLog.objects.exists()
    settings.VACATION_SMTP_PORT = capture.port
    # Postfix retries the same copy: now it goes out, and only once.
    assert deliver("carol@remote.example", message(), routing_address(USER))[0][0] == 250
    assert deliver("carol@remote.example", message(), routing_address(USER))[0][0] == 250
    assert len(capture.messages()) == 1


def test_each_recipient_of_one_copy_gets_its_own_status(responder, capture, vacation):
    User.objects.create(username="bob", email="bob@example.org")
    statuses = deliver(
        "carol@remote.example",
        message("carol@remote.example", "Cc: bob@example.org"),
        routing_address(USER),
        routing_address("bob@example.org"),  # no vacation set: accepted, nothing sent
        "stray@elsewhere.example",
    )
    assert [code for code, _ in statuses] == [250, 250, 250]
    assert b"sent" in statuses[0][1] and b"no-vacation" in statuses[1][1]
    assert len(capture.messages()) == 1


def test_mail_through_a_disposable_alias_gets_a_reply_only_if_the_alias_allows_it(responder, capture, vacation):
    owner = User.objects.create(username="alice", email=USER)
    domain = Domain.objects.create(name="alias.example.org", is_alias_domain=True)
    alias = Alias.objects.create(owner=owner, local_part="shopcom", domain=domain)
    through_alias = message("shop@remote.example", to="shopcom@alias.example.org")
    deliver("shop@remote.example", through_alias, routing_address(USER))
    assert capture.messages() == []
    alias.vacation_replies = True
    alias.save()
    deliver("shop@remote.example", through_alias, routing_address(USER))
    assert len(capture.messages()) == 1


def test_a_message_with_bytes_that_are_not_utf8_is_answered_without_error(responder, capture, vacation):
    raw = b"From: \xff\xfe <carol@remote.example>\r\nTo: alice@example.org\r\nSubject: \xe9\xe8\r\n\r\n\xff\x00\r\n"
    assert deliver("carol@remote.example", raw, routing_address(USER))[0][0] == 250
    assert len(capture.messages()) == 1


def test_a_stored_subject_with_a_line_break_never_becomes_a_header(responder, capture, vacation):
    # Forms refuse this; a row written some other way must still not inject a header.
    VacationReply.objects.filter(pk=vacation.pk).update(subject="Away\r\nBcc: victim@remote.example")
    assert deliver("carol@remote.example", message(), routing_address(USER))[0][0] == 250
    assert capture.messages() == []


def test_after_the_end_there_is_no_reply(responder, capture, vacation):
    VacationReply.objects.filter(pk=vacation.pk).update(ends_at=timezone.now())
    deliver("carol@remote.example", message(), routing_address(USER))
    assert capture.messages() == []


def test_a_reply_refused_for_good_is_not_retried_forever(responder, capture, vacation):
    sender = "nosuch-carol@remote.example"
    [(code, text)] = deliver(sender, message(sender), routing_address(USER))
    assert code == 250 and b"refused" in text
    assert capture.messages() == []
    assert not ReplyLog.objects.exists()


def test_a_sender_gets_the_reply_again_once_the_interval_has_passed(responder, capture, vacation):
    deliver("carol@remote.example", message(), routing_address(USER))
    ReplyLog.objects.update(sent_at=timezone.now() - timedelta(days=7, minutes=1))
    deliver("carol@remote.example", message(), routing_address(USER))
    assert len(capture.messages()) == 2
    [entry] = ReplyLog.objects.all()
    assert timezone.now() - entry.sent_at < timedelta(minutes=1)


def test_a_new_text_counts_as_a_new_reply(responder, capture, vacation):
    deliver("carol@remote.example", message(), routing_address(USER))
    VacationReply.objects.filter(pk=vacation.pk).update(body="Back on Monday after all.")
    deliver("carol@remote.example", message(), routing_address(USER))
    # Both texts go out (the capture may receive the two in either order).
    assert sorted(reply.get_content().splitlines()[0] for reply in replies(capture)) == [
        "Back on Monday after all.",
        "I am away until Friday and read no mail.",
    ]


def test_a_copy_with_an_internationalised_sender_is_accepted_and_gets_no_reply(responder, capture, vacation):
    with smtplib.LMTP(settings.RESPONDER_HOST, settings.RESPONDER_PORT) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        assert lmtp.has_extn("smtputf8")
        lmtp.command_encoding = "utf-8"
        assert lmtp.mail("jürgen@bücher.example", ["SMTPUTF8"])[0] == 250
        assert lmtp.rcpt(routing_address(USER))[0] == 250
        code, text = lmtp.data(message("carol@remote.example"))
    assert code == 250 and b"empty-sender" in text
    assert capture.messages() == []


def test_the_responder_waits_for_its_port_when_something_holds_it_for_a_moment(transactional_db):
    holder = socket.socket()
    holder.bind(("127.0.0.1", free_port()))
    holder.listen()
    port = holder.getsockname()[1]
    threading.Timer(0.5, holder.close).start()
    running = ResponderThread(port=port).start()
    try:
        with smtplib.LMTP("127.0.0.1", port) as lmtp:
            assert lmtp.ehlo_or_helo_if_needed() is None and lmtp.has_extn("8bitmime")
    finally:
        running.stop()


# --- when the reply counts as sent: recorded before its end of data -----------------------------


def _reply_log(sender: str) -> list[datetime]:
    try:
        return list(ReplyLog.objects.filter(sender=sender).values_list("sent_at", flat=True))
    finally:
        connections.close_all()  # this relay thread's own connection


class Relay:
    """Stands for Postfix where replies are handed over, answering the end of data with
    `answer`; notes what the reply log held for the recipient at that very moment. Refuses
    recipients starting with "nosuch" for good and "busy" for now. Offers PIPELINING (as
    Postfix does) or not, so the responder's envelope runs both ways."""

    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining
        self.answer = "250 2.0.0 accepted"
        self.closing = False  # answer the next MAIL with 421, as Postfix after its idle timeout
        self.sessions = 0
        self.recipients: list[str] = []
        self.ends: list[list[datetime]] = []  # the reply log at each end of data
        self.accepted: list[bytes] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions += 1
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:] if self.pipelining else responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.closing:
            self.closing = False
            return "421 4.4.2 relay.example Error: timeout exceeded"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.recipients.append(address)
        if address.startswith(("nosuch", "busy")):
            return "550 5.1.1 no such user" if address.startswith("nosuch") else "450 4.2.1 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.ends.append(await asyncio.to_thread(_reply_log, envelope.rcpt_tos[0]))
        if self.answer.startswith("250"):
            self.accepted.append(envelope.original_content)
        return self.answer


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelined"])
def relay(request, transactional_db, settings):
    relay = Relay(pipelining=request.param)
    relay.controller.start()
    settings.VACATION_SMTP_PORT = relay.controller.port
    running = ResponderThread().start()
    yield relay
    running.stop()
    relay.controller.stop()


CAROL = "carol@remote.example"


def test_the_reply_is_in_the_log_when_postfix_receives_its_end_of_data(relay, vacation):
    [(code, text)] = deliver(CAROL, message(), routing_address(USER))
    assert code == 250 and b"sent" in text
    [(sent_at,)] = [tuple(log) for log in relay.ends]  # recorded before the "." went out
    assert ReplyLog.objects.get(sender=CAROL).sent_at == sent_at
    assert len(relay.accepted) == 1


def test_a_temporary_refusal_at_the_end_of_data_takes_the_record_back_and_the_retry_replies_once(relay, vacation):
    relay.answer = "451 4.3.0 queue file write error"
    [(code, _)] = deliver(CAROL, message(), routing_address(USER))
    assert code == 451
    assert [len(log) for log in relay.ends] == [1]  # it was recorded at the end of data ...
    assert not ReplyLog.objects.exists()  # ... and taken back
    relay.answer = "250 2.0.0 accepted"
    for _ in range(2):  # Postfix's retry, then a later copy within the interval
        assert deliver(CAROL, message(), routing_address(USER))[0][0] == 250
    assert len(relay.accepted) == 1
    assert ReplyLog.objects.filter(sender=CAROL).count() == 1


def test_a_refused_reply_leaves_the_earlier_record_as_it_was(relay, vacation):
    earlier = timezone.now() - timedelta(days=8)
    ReplyLog.objects.create(vacation=vacation, sender=CAROL, reply_key=vacation.reply_key, sent_at=earlier)
    relay.answer = "451 4.3.0 try again later"
    assert deliver(CAROL, message(), routing_address(USER))[0][0] == 451
    assert ReplyLog.objects.get(sender=CAROL).sent_at == earlier
    relay.answer = "550 5.7.1 not from here"
    [(code, text)] = deliver(CAROL, message(), routing_address(USER))
    assert code == 250 and b"refused" in text
    assert [len(log) for log in relay.ends] == [1, 1]
    assert ReplyLog.objects.get(sender=CAROL).sent_at == earlier
    assert relay.accepted == []


def test_a_reply_refused_for_good_at_the_end_of_data_leaves_no_record(relay, vacation):
    relay.answer = "554 5.7.1 message refused"
    [(code, text)] = deliver(CAROL, message(), routing_address(USER))
    assert code == 250 and b"refused" in text
    assert not ReplyLog.objects.exists()


def _database_gone(record: ReplyRecord) -> None:
    raise OperationalError("database is locked")


def test_a_reply_that_cannot_be_recorded_is_abandoned_before_its_end_of_data(relay, vacation, monkeypatch):
    monkeypatch.setattr(ReplyRecord, "write", _database_gone)
    [(code, _)] = deliver(CAROL, message(), routing_address(USER))
    assert code == 451
    assert relay.recipients == [CAROL]  # the transaction had begun ...
    assert relay.ends == [] and relay.accepted == []  # ... and ended without its ".": nothing queued
    monkeypatch.undo()
    assert deliver(CAROL, message(), routing_address(USER))[0][0] == 250  # Postfix's retry
    assert len(relay.accepted) == 1


def test_a_record_that_cannot_be_taken_back_is_logged_with_its_consequence(relay, vacation, monkeypatch, caplog):
    monkeypatch.setattr(ReplyRecord, "undo", _database_gone)
    relay.answer = "451 4.3.0 try again later"
    with caplog.at_level(logging.ERROR, logger="outofoffice.responder"):
        assert deliver(CAROL, message(), routing_address(USER))[0][0] == 451
    [entry] = [entry for entry in caplog.records if entry.levelno == logging.ERROR]
    assert CAROL in entry.getMessage() and "no reply to this absence" in entry.getMessage()


def test_a_reply_text_with_lines_of_dots_and_non_ascii_arrives_whole(relay, vacation):
    text = ".\n..\n.Punkt\nAbwesend – zurück am Montag.\n" + "x" * 1200
    VacationReply.objects.filter(pk=vacation.pk).update(subject="Abwesend – zurück ✈ " * 6, body=text, delegate="")
    assert deliver(CAROL, message(), routing_address(USER))[0][0] == 250
    [raw] = relay.accepted
    reply = email.message_from_bytes(raw, policy=default)
    assert reply["Subject"] == "Auto: " + "Abwesend – zurück ✈ " * 6
    assert reply.get_content().replace("\r\n", "\n") == text + "\n"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert max(raw) < 0x80  # 7-bit: no 8BITMIME needed on the way


def test_a_recipient_refused_in_the_envelope_leaves_no_record_and_the_session_serves_the_next_reply(relay, vacation):
    nosuch, busy = "nosuch-carol@remote.example", "busy-carol@remote.example"
    [(code, text)] = deliver(nosuch, message(nosuch), routing_address(USER))
    assert code == 250 and b"refused" in text
    assert deliver(busy, message(busy), routing_address(USER))[0][0] == 451
    assert deliver(CAROL, message(), routing_address(USER))[0][0] == 250
    assert list(ReplyLog.objects.values_list("sender", flat=True)) == [CAROL]
    assert len(relay.accepted) == 1


def test_a_reused_session_the_relay_closes_with_421_is_replaced_and_the_reply_goes_out(relay, vacation):
    assert deliver(CAROL, message(), routing_address(USER))[0][0] == 250
    relay.closing = True
    dave = "dave@remote.example"
    [(code, text)] = deliver(dave, message(dave), routing_address(USER))
    assert code == 250 and b"sent" in text
    assert relay.sessions == 2 and len(relay.accepted) == 2


# --- Containment: a suspended user, the caps, forged senders ---------------------------------


def test_a_user_with_an_active_suspension_sends_no_reply_until_reinstated(responder, capture, vacation, caplog):
    suspension = SenderSuspension.objects.create(uid="alice", mail=USER, reason="spam run")
    with caplog.at_level(logging.INFO, logger="outofoffice.responder"):
        assert deliver("carol@remote.example", message(), routing_address(USER))[0][0] == 250
    assert replies(capture) == []
    assert "rule=sender-suspended" in caplog.text
    suspension.lifted_at = timezone.now()
    suspension.save()
    deliver("carol@remote.example", message(), routing_address(USER))
    assert len(replies(capture)) == 1


def test_a_user_blocked_in_the_directory_by_another_tool_sends_no_reply(
    responder, capture, transactional_db, make_directory_user
):
    person = make_directory_user()
    now = timezone.now()
    VacationReply.objects.create(
        uid=person.uid, address=person.mail, enabled=True, starts_at=now - timedelta(hours=1), subject="Away", body="x"
    )
    directory.set_sender_blocked(person.uid, True)
    deliver("carol@remote.example", message(to=person.mail), routing_address(person.mail))
    assert replies(capture) == []
    directory.set_sender_blocked(person.uid, False)
    deliver("carol@remote.example", message(to=person.mail), routing_address(person.mail))
    assert len(replies(capture)) == 1


def test_forged_senders_get_no_more_replies_than_the_per_user_cap(responder, capture, vacation, settings, caplog):
    settings.VACATION_REPLIES_PER_USER_HOUR = 3
    with caplog.at_level(logging.INFO, logger="outofoffice.responder"):
        for n in range(10):
            deliver(f"forged{n}@remote.example", message(f"forged{n}@remote.example"), routing_address(USER))
    assert len(replies(capture)) == 3
    assert caplog.text.count("rule=cap-user-hour") == 7


def test_the_cap_across_all_users_stops_replies_of_everyone(responder, capture, vacation, settings):
    settings.VACATION_REPLIES_ALL_USERS_HOUR = 2
    now = timezone.now()
    VacationReply.objects.create(
        uid="bob", address="bob@example.org", enabled=True, starts_at=now - timedelta(hours=1), subject="Off", body="x"
    )
    for n in range(3):
        deliver(f"s{n}@remote.example", message(f"s{n}@remote.example"), routing_address(USER))
        deliver(
            f"t{n}@remote.example",
            message(f"t{n}@remote.example", to="bob@example.org"),
            routing_address("bob@example.org"),
        )
    assert len(replies(capture)) == 2


@pytest.mark.parametrize(
    ("header", "replied"),
    [
        ("Authentication-Results: mail.example.org; spf=fail smtp.mailfrom=remote.example", False),
        ("Authentication-Results: mail.example.org (ours); spf=softfail (not permitted) smtp.mailfrom=x", False),
        ("Authentication-Results: mail.example.org; spf=pass smtp.mailfrom=x; dmarc=fail header.from=x", False),
        ("Authentication-Results: mail.example.org; spf=pass smtp.mailfrom=remote.example", True),
        # Anyone can write a header naming another server: it decides nothing.
        ("Authentication-Results: elsewhere.example; spf=fail smtp.mailfrom=remote.example", True),
    ],
)
def test_a_sender_our_server_found_forged_gets_no_reply(responder, capture, vacation, settings, header, replied):
    settings.AUTHSERV_ID = "mail.example.org"
    deliver("carol@remote.example", message("carol@remote.example", header), routing_address(USER))
    assert len(replies(capture)) == (1 if replied else 0)


def test_the_responder_keeps_only_the_headers_of_a_large_copy(responder, capture, vacation, monkeypatch):
    seen: list[int] = []
    decide = responder_module.handle_copy

    def measuring(mailbox: str, sender: str, raw: bytes) -> str:
        seen.append(len(raw))
        return decide(mailbox, sender, raw)

    monkeypatch.setattr(responder_module, "handle_copy", measuring)
    body = b"\r\n".join([b"x" * 998] * 20_000)  # 20 MB of body, in lines as long as SMTP allows
    raw = message() + body + b"\r\n"
    [(code, _)] = deliver("carol@remote.example", raw, routing_address(USER))
    assert code == 250
    assert len(capture.messages()) == 1  # decided as usual: the headers are all it needs
    assert seen and seen[0] < 1000  # the headers alone reached the decision


def test_a_copy_over_the_size_limit_is_refused_for_each_recipient_and_the_session_goes_on(
    transactional_db, capture, vacation, settings
):
    settings.RESPONDER_MAX_MESSAGE_BYTES = 100_000
    running = ResponderThread().start()
    try:
        with smtplib.LMTP(settings.RESPONDER_HOST, settings.RESPONDER_PORT) as lmtp:
            code, features = lmtp.ehlo()
            assert code == 250 and b"SIZE 100000" in features  # Postfix sends no larger copy
            lmtp.mail("carol@remote.example")
            lmtp.rcpt(routing_address(USER))
            lmtp.rcpt("stray@elsewhere.example")
            statuses = [lmtp.data(message() + b"y" * 200_000 + b"\r\n"), lmtp.getreply()]
            assert [code for code, _ in statuses] == [552, 552]
            assert all(b"5.3.4" in text for _, text in statuses)
            # The same connection takes the next copy.
            lmtp.mail("carol@remote.example")
            lmtp.rcpt(routing_address(USER))
            assert lmtp.data(message())[0] == 250
    finally:
        running.stop()
    assert len(capture.messages()) == 1
