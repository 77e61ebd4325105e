# ruff: noqa: E501 -- log lines are quoted whole, as Postfix writes them
"""The delivery trail's parser over Postfix's own log formats (postlogd and syslog timestamps)."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from trail.parser import Parser, Record

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def parse(text: str, parser: Parser | None = None, now: datetime = NOW) -> list[Record]:
    return (parser or Parser()).parse(text.strip().splitlines(), now=now)


def test_a_message_delivered_over_lmtp_to_several_recipients_gives_one_record_each() -> None:
    records = parse("""
Dec 07 08:15:03 mail postfix/smtpd[13820]: connect from mx.retailer.example[192.0.2.7]
Dec 07 08:15:03 mail postfix/smtpd[13820]: DBD9D5B6484: client=mx.retailer.example[192.0.2.7]
Dec 07 08:15:03 mail postfix/cleanup[13822]: DBD9D5B6484: message-id=<20261207.1@retailer.example>
Dec 07 08:15:03 mail postfix/smtpd[13820]: disconnect from mx.retailer.example[192.0.2.7] ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6
Dec 07 08:15:03 mail postfix/qmgr[13817]: DBD9D5B6484: from=<Shop@Retailer.example>, size=2294, nrcpt=2 (queue active)
Dec 07 08:15:04 mail postfix/lmtp[13830]: DBD9D5B6484: to=<anna@example.org>, relay=mail.example.org[private/dovecot-lmtp], delay=0.05, delays=0.01/0.01/0.01/0.02, dsn=2.0.0, status=sent (250 2.0.0 <anna@example.org> kJ3bAx Saved)
Dec 07 08:15:04 mail postfix/lmtp[13830]: DBD9D5B6484: to=<ben@example.org>, relay=mail.example.org[private/dovecot-lmtp], delay=0.06, delays=0.01/0.01/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <ben@example.org> kJ3bAx Saved)
Dec 07 08:15:04 mail postfix/qmgr[13817]: DBD9D5B6484: removed
""")
    assert [(r.recipient, r.status) for r in records] == [("anna@example.org", "sent"), ("ben@example.org", "sent")]
    first = records[0]
    assert first == Record(
        logged_at=datetime(2026, 12, 7, 8, 15, 4, tzinfo=UTC),
        queue_id="DBD9D5B6484",
        client="mx.retailer.example[192.0.2.7]",
        sender="shop@retailer.example",
        recipient="anna@example.org",
        original_recipient="",
        status="sent",
        relay="mail.example.org[private/dovecot-lmtp]",
        dsn="2.0.0",
        delay=0.05,
        reply="250 2.0.0 <anna@example.org> kJ3bAx Saved",
    )


def test_an_alias_delivered_by_virtual_keeps_the_address_it_was_sent_to() -> None:
    [record] = parse("""
Dec  7 09:00:00 mail postfix/smtpd[2001]: 3A1B2C3D4E: client=localhost[127.0.0.1]
Dec  7 09:00:00 mail postfix/qmgr[900]: 3A1B2C3D4E: from=<sender@outside.example>, size=420, nrcpt=1 (queue active)
Dec  7 09:00:00 mail postfix/virtual[2003]: 3A1B2C3D4E: to=<anna@example.org>, orig_to=<shopping@alias.example.org>, relay=virtual, delay=0.02, delays=0.01/0.01/0/0, dsn=2.0.0, status=sent (delivered to maildir)
""")
    assert (record.recipient, record.original_recipient, record.relay) == (
        "anna@example.org",
        "shopping@alias.example.org",
        "virtual",
    )
    assert record.reply == "delivered to maildir"


def test_relayed_out_over_smtp_with_the_remote_reply() -> None:
    [record] = parse("""
Dec  7 09:01:00 mail postfix/qmgr[900]: 4B2C3D4E5F: from=<anna@example.org>, size=900, nrcpt=1 (queue active)
Dec  7 09:01:01 mail postfix/smtp[2010]: 4B2C3D4E5F: to=<friend@remote.example>, relay=mx.remote.example[203.0.113.9]:25, conn_use=2, delay=0.9, delays=0.1/0.01/0.3/0.49, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9F8E7D)
""")
    assert (record.status, record.relay, record.delay) == ("sent", "mx.remote.example[203.0.113.9]:25", 0.9)
    assert record.reply == "250 2.0.0 Ok: queued as 9F8E7D"


def test_deferred_with_connection_refused() -> None:
    [record] = parse("""
Dec 07 08:15:03 mail postfix/qmgr[13817]: DBD9D5B6484: from=<a@example.net>, size=294, nrcpt=1 (queue active)
Dec 07 08:15:03 mail postfix/smtp[13824]: connect to 127.0.0.1[127.0.0.1]:26294: Connection refused
Dec 07 08:15:03 mail postfix/smtp[13824]: DBD9D5B6484: to=<b@gmail.example>, relay=none, delay=0.02, delays=0.01/0.01/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:26294: Connection refused)
""")
    assert (record.status, record.dsn, record.relay) == ("deferred", "4.4.1", "none")
    assert record.reply == "connect to 127.0.0.1[127.0.0.1]:26294: Connection refused"


def test_bounced_with_the_remote_5xx_reply_including_its_parentheses() -> None:
    [record] = parse("""
Dec  7 09:02:00 mail postfix/smtp[2020]: 5A6B7C8D9E: to=<nosuch@remote.example>, relay=mx.remote.example[203.0.113.9]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=5.1.1, status=bounced (host mx.remote.example[203.0.113.9] said: 550 5.1.1 <nosuch@remote.example>: Recipient address rejected: User unknown (in reply to RCPT TO command))
""")
    assert (record.status, record.dsn) == ("bounced", "5.1.1")
    assert record.reply.endswith("User unknown (in reply to RCPT TO command)")


def test_expiry_names_every_recipient_still_deferred_with_the_last_reason() -> None:
    parser = Parser()
    parse(
        """
Dec  2 09:00:00 mail postfix/smtpd[2001]: 6C7D8E9F0A: client=localhost[127.0.0.1]
Dec  2 09:00:00 mail postfix/qmgr[900]: 6C7D8E9F0A: from=<anna@example.org>, size=900, nrcpt=3 (queue active)
Dec  2 09:00:01 mail postfix/smtp[2010]: 6C7D8E9F0A: to=<a@down.example>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to mx.down.example[203.0.113.50]:25: Connection refused)
Dec  2 09:00:01 mail postfix/smtp[2010]: 6C7D8E9F0A: to=<b@down.example>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to mx.down.example[203.0.113.50]:25: Connection refused)
Dec  2 09:00:01 mail postfix/smtp[2011]: 6C7D8E9F0A: to=<c@up.example>, relay=mx.up.example[203.0.113.8]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok)
""",
        parser,
    )
    records = parse(
        """
Dec  7 09:00:00 mail postfix/qmgr[900]: 6C7D8E9F0A: from=<anna@example.org>, size=900, nrcpt=3 (queue active)
Dec  7 09:00:02 mail postfix/smtp[2012]: 6C7D8E9F0A: to=<b@down.example>, relay=mx.down.example[203.0.113.50]:25, delay=432002, delays=432000/0/1/1, dsn=4.2.2, status=deferred (host mx.down.example[203.0.113.50] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))
Dec  7 09:00:03 mail postfix/qmgr[900]: 6C7D8E9F0A: from=<anna@example.org>, status=expired, returned to sender
Dec  7 09:00:03 mail postfix/bounce[2100]: 6C7D8E9F0A: sender non-delivery notification: 7D8E9F0A1B
Dec  7 09:00:03 mail postfix/qmgr[900]: 6C7D8E9F0A: removed
""",
        parser,
    )
    expired = [r for r in records if r.status == "expired"]
    assert [(r.recipient, r.dsn) for r in expired] == [("a@down.example", "4.4.1"), ("b@down.example", "4.2.2")]
    assert expired[1].reply.startswith("host mx.down.example[203.0.113.50] said: 452 4.2.2 Mailbox full")
    assert expired[0].client == "localhost[127.0.0.1]" and expired[0].sender == "anna@example.org"
    assert parser.open == {}  # `removed` forgets the message


def test_noqueue_reject_at_rcpt_keeps_the_reply_text_and_the_envelope() -> None:
    [record] = parse("""
Dec 07 08:16:00 mail postfix/smtpd[2010]: NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 550 5.1.1 <leaked@alias.example.org>: Recipient address rejected: This address is disabled; from=<shop@retailer.example> to=<leaked@alias.example.org> proto=ESMTP helo=<mx.retailer.example>
""")
    assert record == Record(
        logged_at=datetime(2026, 12, 7, 8, 16, tzinfo=UTC),
        queue_id="",
        client="unknown[192.0.2.7]",
        sender="shop@retailer.example",
        recipient="leaked@alias.example.org",
        original_recipient="",
        status="rejected",
        relay="",
        dsn="5.1.1",
        delay=None,
        reply="550 5.1.1 <leaked@alias.example.org>: Recipient address rejected: This address is disabled",
    )


def test_a_sender_refused_at_mail_from_and_an_ipv6_client() -> None:
    [record] = parse("""
Dec 07 08:17:00 mail postfix/submission/smtpd[2011]: NOQUEUE: reject: MAIL from unknown[2001:db8::7]: 554 5.7.1 <x@example.org>: Sender address rejected: Sending is suspended for this account; contact abuse@example.org; from=<x@example.org> proto=ESMTP helo=<laptop>
""")
    assert (record.client, record.sender, record.recipient, record.dsn) == (
        "unknown[2001:db8::7]",
        "x@example.org",
        "",
        "5.7.1",
    )
    assert record.reply.endswith("Sending is suspended for this account; contact abuse@example.org")


def test_a_later_recipient_refused_after_the_queue_file_exists_keeps_its_queue_id() -> None:
    [record] = parse("""
Dec 07 08:18:00 mail postfix/smtpd[2012]: 8E9F0A1B2C: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <gone@alias.example.org>: Recipient address rejected: This address has been deleted; from=<a@b.example> to=<gone@alias.example.org> proto=ESMTP helo=<x>
""")
    assert (record.queue_id, record.status) == ("8E9F0A1B2C", "rejected")


def test_subjects_and_bodies_never_reach_a_record() -> None:
    records = parse("""
Dec  7 09:05:00 mail postfix/smtpd[2001]: 9F0A1B2C3D: client=localhost[127.0.0.1]
Dec  7 09:05:00 mail postfix/cleanup[2002]: 9F0A1B2C3D: reject: header Subject: secret merger plans from localhost[127.0.0.1]; from=<a@example.org> to=<b@example.org> proto=ESMTP helo=<x>: 5.7.1 forbidden
Dec  7 09:05:00 mail postfix/cleanup[2002]: 9F0A1B2C3D: warning: body confidential salary list from localhost[127.0.0.1]; from=<a@example.org> to=<b@example.org> proto=ESMTP helo=<x>
Dec  7 09:05:00 mail postfix/cleanup[2002]: 9F0A1B2C3D: milter-reject: END-OF-MESSAGE from localhost[127.0.0.1]: 5.7.1 Subject secret merger plans; from=<a@example.org> to=<b@example.org> proto=ESMTP helo=<x>
""")
    assert records == []


def test_lines_that_are_not_about_a_message_are_skipped() -> None:
    assert (
        parse("""
Dec  7 09:06:00 mail postfix/anvil[3000]: statistics: max connection rate 1/60s for (smtp:192.0.2.7) at Dec  7 09:01:00
Dec  7 09:06:00 mail postfix/smtpd[3001]: warning: hostname x.example does not resolve to address 192.0.2.8
Dec  7 09:06:00 mail dovecot: lmtp(anna)<123><abc>: msgid=<1@x>: saved mail to INBOX
Dec  7 09:06:00 mail postfix/smtp[3002]: 0A1B2C3D4E: to=<probe@example.org>, relay=mx[1.2.3.4]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.1.5, status=deliverable (250 2.1.5 Ok)
garbage without a timestamp: to=<x@y>
""")
        == []
    )


def test_iso_timestamps_and_long_queue_ids_of_rsyslog() -> None:
    [record] = parse("""
2026-12-07T10:15:03.123456+01:00 mail postfix/smtp[13824]: 4Lz9Pp5Wq3zKH7: to=<b@gmail.example>, relay=none, delay=0.02, delays=0.01/0.01/0/0, dsn=4.4.1, status=deferred (connect to mx[1.2.3.4]:25: Connection refused)
""")
    assert record.queue_id == "4Lz9Pp5Wq3zKH7"
    assert record.logged_at == datetime(2026, 12, 7, 9, 15, 3, 123456, tzinfo=UTC)


def test_a_year_less_timestamp_lands_in_the_right_year_and_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    line = "Dec 31 23:59:59 mail postfix/smtp[1]: 1A2B3C4D5E: to=<x@y.example>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (down)"
    [record] = Parser(zone=berlin).parse([line], now=datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    assert record.logged_at == datetime(2026, 12, 31, 23, 59, 59, tzinfo=berlin)


def test_the_open_messages_survive_a_restart_through_the_saved_state() -> None:
    first = Parser()
    parse(
        """
Dec  7 09:00:00 mail postfix/smtpd[2001]: 1B2C3D4E5F: client=mx.retailer.example[192.0.2.7]
Dec  7 09:00:00 mail postfix/qmgr[900]: 1B2C3D4E5F: from=<shop@retailer.example>, size=420, nrcpt=1 (queue active)
Dec  7 09:00:01 mail postfix/smtp[2010]: 1B2C3D4E5F: to=<a@down.example>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (refused)
""",
        first,
    )
    again = Parser(state=first.state())
    [record] = parse(
        "Dec 12 09:00:00 mail postfix/qmgr[900]: 1B2C3D4E5F: from=<shop@retailer.example>, status=expired, returned to sender",
        again,
    )
    assert (record.recipient, record.client, record.status, record.reply) == (
        "a@down.example",
        "mx.retailer.example[192.0.2.7]",
        "expired",
        "refused",
    )


def test_hostile_log_content_is_cut_and_kept_as_text() -> None:
    long = "x" * 5000
    [record] = parse(
        f"Dec  7 09:00:00 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from h[192.0.2.1]: 550 5.7.1 {long}; "
        f"from=<{long}@evil.example> to=<<script>@x> proto=ESMTP helo=<x>"
    )
    assert len(record.reply) <= 1000 and len(record.sender) <= 320
    assert record.recipient == "<script>@x"  # kept as text; pages escape it


def test_a_malformed_timestamp_or_number_skips_the_line_and_not_the_rest() -> None:
    records = parse("""
Feb 30 09:00:00 mail postfix/smtp[1]: 1A2B3C4D5E: to=<a@y.example>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (down)
Foo  7 09:00:00 mail postfix/smtp[1]: 1A2B3C4D5E: to=<b@y.example>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (down)
Dec  7 09:00:00 mail postfix/smtp[1]: 1A2B3C4D5E: to=<c@y.example>, relay=none, delay=1.2.3, delays=0/0/0/1, dsn=4.4.1, status=deferred (down)
Dec  7 09:00:00 mail postfix/smtp[1]: 1A2B3C4D5E: to=<d@y.example>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (down)
""")
    assert [r.recipient for r in records] == ["d@y.example"]


def test_29_february_read_in_the_following_year() -> None:
    line = "Feb 29 10:00:00 mail postfix/smtp[1]: 1A2B3C4D5E: to=<x@y.example>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (down)"
    [record] = Parser().parse([line], now=datetime(2029, 1, 2, tzinfo=UTC))
    assert record.logged_at == datetime(2028, 2, 29, 10, tzinfo=UTC)


def test_a_postscreen_reject_and_a_locally_submitted_message() -> None:
    records = parse("""
Dec  7 09:10:00 mail postfix/postscreen[4001]: NOQUEUE: reject: RCPT from [192.0.2.99]:51234: 550 5.7.1 Service unavailable; client [192.0.2.99] blocked using zen.spamhaus.org; from=<spam@bad.example>, to=<anna@example.org>, proto=ESMTP, helo=<bad>
Dec  7 09:10:01 mail postfix/pickup[4002]: 2C3D4E5F6A: uid=33 from=<www-data>
Dec  7 09:10:01 mail postfix/qmgr[900]: 2C3D4E5F6A: from=<www-data@example.org>, size=500, nrcpt=1 (queue active)
Dec  7 09:10:01 mail postfix/virtual[4003]: 2C3D4E5F6A: to=<anna@example.org>, relay=virtual, delay=0.01, delays=0/0/0/0.01, dsn=2.0.0, status=sent (delivered to maildir)
""")
    assert [(r.status, r.client, r.sender, r.recipient) for r in records] == [
        ("rejected", "[192.0.2.99]:51234", "spam@bad.example", "anna@example.org"),
        ("sent", "local", "www-data@example.org", "anna@example.org"),
    ]
    assert records[0].reply.startswith("550 5.7.1 Service unavailable; client [192.0.2.99] blocked")
