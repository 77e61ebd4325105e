"""Every rule of the vacation responder, on the pure decision function (no services needed)."""

from datetime import UTC, datetime, timedelta

import pytest

from outofoffice.rules import Recipient, decide, parse_incoming

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
USER = "alice@example.org"


def recipient(**changes) -> Recipient:
    values = {
        "address": USER,
        "enabled": True,
        "starts_at": NOW - timedelta(days=1),
        "ends_at": NOW + timedelta(days=1),
        "interval": timedelta(days=7),
        "own_addresses": frozenset({USER, "shop@alias.example.org", "news@alias.example.org"}),
        "reply_addresses": frozenset({USER, "news@alias.example.org"}),
        "last_reply_at": None,
    }
    values.update(changes)
    return Recipient(**values)


def message(*extra: str, to: str = USER) -> bytes:
    lines = [f"To: {to}", "From: Bob <bob@remote.example>", "Subject: hello", "Message-ID: <1@remote.example>", *extra]
    return ("\r\n".join(lines) + "\r\n\r\nbody text\r\n").encode()


def decision(raw: bytes | None = None, sender: str = "bob@remote.example", who: Recipient | None = None):
    return decide(parse_incoming(sender, raw if raw is not None else message()), who or recipient(), NOW)


def test_an_ordinary_message_from_outside_gets_a_reply():
    result = decision()
    assert result.reply and result.rule == "reply"


def test_no_vacation_set_means_no_reply():
    assert decide(parse_incoming("bob@remote.example", message()), None, NOW).rule == "no-vacation"


def test_switched_off_vacation_gets_no_reply():
    assert decision(who=recipient(enabled=False)).rule == "vacation-off"


def test_before_the_start_there_is_no_reply():
    assert decision(who=recipient(starts_at=NOW + timedelta(minutes=1))).rule == "outside-window"


def test_the_reply_stops_exactly_at_the_end():
    assert decision(who=recipient(ends_at=NOW)).rule == "outside-window"
    assert decision(who=recipient(ends_at=NOW + timedelta(seconds=1))).reply


def test_open_ended_vacation_replies():
    assert decision(who=recipient(starts_at=None, ends_at=None)).reply


@pytest.mark.parametrize("sender", ["", "<>", "   "])
def test_empty_envelope_sender_gets_no_reply(sender):
    assert decision(sender=sender).rule == "empty-sender"


@pytest.mark.parametrize("sender", ["not-an-address", "bob@", "a b@remote.example", "bob@remote.example\r\nBcc: x@y.z"])
def test_unusable_envelope_sender_gets_no_reply(sender):
    assert decision(sender=sender).rule == "empty-sender"


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.remote.example",
        "postmaster@remote.example",
        "owner-staff@lists.remote.example",
        "staff-request@lists.remote.example",
        "staff-owner@lists.remote.example",
        "LISTSERV@lists.remote.example",
        "majordomo@lists.remote.example",
        "noreply@shop.example",
        "no-reply@shop.example",
        "no_reply@shop.example",
        "do-not-reply@shop.example",
        "donotreply@shop.example",
        "notifications-noreply@shop.example",
        "staff-bounces@lists.remote.example",
    ],
)
def test_system_and_no_reply_senders_get_no_reply(sender):
    assert decision(sender=sender).rule == "system-sender"


@pytest.mark.parametrize("sender", [USER, "shop@alias.example.org", "ALICE@Example.org"])
def test_mail_from_the_user_themselves_gets_no_reply(sender):
    assert decision(sender=sender).rule == "sender-is-user"


def test_our_own_reply_coming_back_gets_no_reply():
    assert decision(message("X-Mailadmin-Vacation: auto-replied")).rule == "loop"


@pytest.mark.parametrize("value", ["auto-replied", "auto-generated", "auto-notified; owner=x@y.z", "Auto-Replied"])
def test_auto_submitted_messages_get_no_reply(value):
    assert decision(message(f"Auto-Submitted: {value}")).rule == "auto-submitted"


def test_auto_submitted_no_still_gets_a_reply():
    assert decision(message("Auto-Submitted: no")).reply


@pytest.mark.parametrize("header", ["List-Id: <staff.lists.remote.example>", "List-Unsubscribe: <mailto:x@y.z>"])
def test_list_messages_get_no_reply(header):
    assert decision(message(header)).rule == "mailing-list"


@pytest.mark.parametrize("value", ["bulk", "list", "junk", " Bulk "])
def test_bulk_list_and_junk_precedence_get_no_reply(value):
    assert decision(message(f"Precedence: {value}")).rule == "precedence"


def test_first_class_precedence_still_gets_a_reply():
    assert decision(message("Precedence: first-class")).reply


@pytest.mark.parametrize("value", ["All", "OOF", "DR, OOF, AutoReply", "all"])
def test_x_auto_response_suppress_all_or_oof_gets_no_reply(value):
    assert decision(message(f"X-Auto-Response-Suppress: {value}")).rule == "suppressed"


def test_x_auto_response_suppress_for_other_kinds_still_gets_a_reply():
    assert decision(message("X-Auto-Response-Suppress: DR, RN")).reply


@pytest.mark.parametrize("header", ["X-Spam-Flag: YES", "X-Spam-Status: Yes, score=9.1", "X-Spam: yes"])
def test_spam_gets_no_reply(header):
    assert decision(message(header)).rule == "spam"


def test_not_spam_still_gets_a_reply():
    assert decision(message("X-Spam-Flag: NO", "X-Spam-Status: No, score=0.1")).reply


def test_mail_not_addressed_to_the_user_gets_no_reply():
    assert decision(message(to="everyone@example.org")).rule == "not-addressed"


@pytest.mark.parametrize(
    "header", ["Cc: Alice <alice@example.org>", "Bcc: alice@example.org", "Resent-To: <alice@example.org>"]
)
def test_cc_bcc_and_resent_count_as_addressed(header):
    assert decision(message(header, to="everyone@example.org")).reply


def test_mail_through_a_disposable_alias_gets_no_reply_by_default():
    result = decision(message(to="shop@alias.example.org"))
    assert result.rule == "not-addressed"


def test_mail_through_an_alias_with_replies_switched_on_gets_a_reply():
    assert decision(message(to="News <news@alias.example.org>")).reply


def test_a_sender_answered_within_the_interval_gets_no_second_reply():
    result = decision(who=recipient(last_reply_at=NOW - timedelta(days=6, hours=23)))
    assert result.rule == "already-answered"


def test_a_sender_answered_before_the_interval_gets_another_reply():
    assert decision(who=recipient(last_reply_at=NOW - timedelta(days=7))).reply


def test_a_bounce_quoting_the_users_own_text_gets_no_reply():
    bounce = message(
        "Auto-Submitted: auto-replied",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b",
        to=USER,
    )
    assert decision(bounce, sender="").rule == "empty-sender"


def test_headers_with_bytes_that_are_not_utf8_do_not_break_the_decision():
    raw = b"To: alice@example.org\r\nSubject: caf\xe9 \xff\r\nFrom: \xc3\x28 <bob@remote.example>\r\n\r\n\xff\x00"
    assert decision(raw).reply
    assert decision(raw, sender="b\xe9b@remote.example").rule == "empty-sender"


def test_garbage_instead_of_a_message_gets_no_reply_and_no_error():
    for raw in (b"", b"\x00\xff\xfe", b"no headers at all", b":\r\n:::\r\n\r\n", b"To" * 200_000):
        assert decision(raw).rule == "not-addressed"


def test_folded_headers_are_read_whole():
    raw = b"To: someone@example.org,\r\n\talice@example.org\r\nList-Id:\r\n <x.y>\r\n\r\nbody"
    assert decision(raw).rule == "mailing-list"
