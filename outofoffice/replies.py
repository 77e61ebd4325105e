"""Building, handing over and recording one vacation reply.

A reply is made only of the user's own text: nothing of the original message is copied
into it except its Message-ID (for In-Reply-To/References), and only if well-formed.

The reply is written as bytes from a fixed template (building an EmailMessage and
serialising it cost ~1.8 ms per reply, the template ~0.03 ms). Every header value is
checked to be printable ASCII or encoded as RFC 2047 words, so no typed or stored text can
end a header line, and the body is 7-bit (quoted-printable unless plain ASCII), so the
hand-over needs neither 8BITMIME nor SMTPUTF8.
"""

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from django.conf import settings
from django.db import connection

from mailadmin import outgoing_mail
from outofoffice.models import ReplyLog, VacationReply
from outofoffice.rules import ADDRESS_PATTERN, LOOP_HEADER, Incoming

MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>\Z")
PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*\Z")
PLAIN_BODY = re.compile(r"^[\x20-\x7e\t\n]*\Z")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_LINE = 998  # RFC 5322, octets without the CRLF
WORD_BYTES = 45  # UTF-8 octets per encoded word: "=?utf-8?b?" + 60 base64 chars + "?=" stays within 75


def reply_text(vacation: VacationReply, internal: bool) -> str:
    text = vacation.internal_body if internal and vacation.internal_body.strip() else vacation.body
    text = text.replace("\r\n", "\n").rstrip()
    if vacation.delegate:
        text += f"\n\nIn urgent matters please contact: {vacation.delegate}"
    return text + "\n"


def _ascii_value(name: str, value: str) -> str:
    """A header value that is written as is: printable ASCII only, so it cannot end the line."""
    if not PRINTABLE_ASCII.match(value):
        raise ValueError(f"{name} is not printable ASCII")
    return value


def encoded_words(text: str) -> str:
    """Text for an unstructured header: as is when plain ASCII, else RFC 2047 base64 words
    (split between characters, folded). Line breaks and other controls are refused."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError("control characters in a header value")
    if PRINTABLE_ASCII.match(text) and "=?" not in text:
        return text
    words: list[str] = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > WORD_BYTES:
            words.append(chunk.decode("utf-8"))
            chunk = b""
        chunk += encoded
    words.append(chunk.decode("utf-8"))
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word.encode()).decode()}?=" for word in words)


def _body(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body with CRLF line ends): 7bit when that is valid as is."""
    lines = LINE_BREAK.split(text)
    if PLAIN_BODY.match(text) and all(len(line) <= MAX_LINE for line in lines):
        return "7bit", "\r\n".join(lines).encode("ascii")
    data = "\r\n".join(lines).encode("utf-8")
    return "quoted-printable", binascii.b2a_qp(data, istext=True)


def build_reply(vacation: VacationReply, incoming: Incoming, internal: bool, now: datetime) -> bytes:
    """The reply as it goes over SMTP (CRLF line ends, not yet dot-stuffed).
    Raises ValueError if the stored reply or the addresses cannot make a safe message."""
    domain = vacation.address.rsplit("@", 1)[-1]
    headers = [
        ("From", _ascii_value("From", vacation.address)),
        ("To", _ascii_value("To", incoming.sender)),
        ("Subject", "Auto: " + encoded_words(vacation.subject or "Out of office")),
        ("Date", format_datetime(now)),
        ("Message-ID", _ascii_value("Message-ID", make_msgid(domain=domain))),
    ]
    original_id = incoming.first("message-id")
    if MESSAGE_ID.match(original_id):
        headers += [("In-Reply-To", original_id), ("References", original_id)]
    encoding, body = _body(reply_text(vacation, internal))
    headers += [
        ("Auto-Submitted", "auto-replied"),
        ("X-Auto-Response-Suppress", "All"),
        (LOOP_HEADER, "auto-replied"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", encoding),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    return head + b"\r\n" + body + (b"" if body.endswith(b"\r\n") else b"\r\n")


@dataclass
class ReplyRecord:
    """The reply-log row of one reply (what the interval rule reads). It is written just before
    the reply's end of data, so a responder killed after that point never replies twice, and
    taken back when Postfix does not accept the reply, so the retry replies once."""

    vacation: VacationReply
    sender: str
    sent_at: datetime
    previous: datetime | None  # the last reply the interval rule saw, if any
    written: bool = False

    def write(self) -> None:
        # One upsert statement in autocommit: committed when it returns.
        table = ReplyLog._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                # This connection's commits skip the fsync (the database is in WAL mode, see
                # settings): they survive any crash of the responder, and only a power loss or
                # kernel crash can forget the last replies (those senders may get one more).
                # Other connections keep synchronous=FULL. Cuts ~1 ms of serialised commit per reply.
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(
                f"INSERT INTO {table} (vacation_id, sender, reply_key, sent_at) VALUES (%s, %s, %s, %s) "  # noqa: S608
                "ON CONFLICT (vacation_id, sender, reply_key) DO UPDATE SET sent_at = excluded.sent_at",
                [
                    self.vacation.pk,
                    self.sender,
                    self.vacation.reply_key,
                    connection.ops.adapt_datetimefield_value(self.sent_at),
                ],
            )
        self.written = True

    def undo(self) -> None:
        """Put back what the interval rule saw before (only if the row is still this reply's)."""
        if not self.written:
            return
        rows = ReplyLog.objects.filter(
            vacation=self.vacation, sender=self.sender, reply_key=self.vacation.reply_key, sent_at=self.sent_at
        )
        if self.previous is None:
            rows.delete()
        else:
            rows.update(sent_at=self.previous)
        self.written = False


def hand_over(content: bytes, recipient: str, before_end: Callable[[], None]) -> None:
    """Hand the reply to Postfix with an empty envelope sender, to the envelope sender only,
    on this thread's SMTP session (outgoing_mail.send_with_null_sender: `before_end` runs once
    the content is out, before the final "."). Raises MailRefused when Postfix refused it for
    good, MailNotSent when it did not take it for now."""
    if not ADDRESS_PATTERN.match(recipient):  # the rules make sure; this keeps CR/LF out of RCPT TO
        raise outgoing_mail.MailRefused("the recipient is not a usable address")
    target = (settings.VACATION_SMTP_HOST, settings.VACATION_SMTP_PORT)
    outgoing_mail.send_with_null_sender(target, content, recipient, before_end)
