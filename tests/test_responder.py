"""The responder over LMTP, in this process, handing replies to a capturing SMTP server.

The capture stands in for Postfix here (the boundary of the project); the end-to-end tests in
test_responder_e2e.py run the same path through the private Postfix.
"""

import email
import smtplib
from datetime import timedelta
from email.policy import default

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from aliases.models import Alias, Domain
from localservices.outside import OutsideWorld
from localservices.process import free_port
from outofoffice.models import ReplyLog, VacationReply
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
    from django.conf import settings

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
    assert [reply.get_content().splitlines()[0] for reply in replies(capture)] == [
        "I am away until Friday and read no mail.",
        "Back on Monday after all.",
    ]


def test_a_copy_with_an_internationalised_sender_is_accepted_and_gets_no_reply(responder, capture, vacation):
    from django.conf import settings

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
    import socket
    import threading

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
