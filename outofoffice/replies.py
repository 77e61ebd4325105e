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
import smtplib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from django.conf import settings
from django.db import connection

from outofoffice.models import ReplyLog, VacationReply
from outofoffice.rules import ADDRESS_PATTERN, LOOP_HEADER, Incoming

MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>\Z")
PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*\Z")
PLAIN_BODY = re.compile(r"^[\x20-\x7e\t\n]*\Z")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_LINE = 998  # RFC 5322, octets without the CRLF
WORD_BYTES = 45  # UTF-8 octets per encoded word: "=?utf-8?b?" + 60 base64 chars + "?=" stays within 75


class ReplyNotAccepted(Exception):
    """Postfix did not take the reply for now; the copy must be retried."""


class ReplyRefused(Exception):
    """Postfix refused the reply for good (5xx): retrying the copy would not change that."""


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


class _Connections(threading.local):
    smtp: smtplib.SMTP | None = None
    target: tuple[str, int] | None = None


# One SMTP session per responder thread, reused: a new connection per reply would cost
# Postfix an smtpd hand-over each time.
_connections = _Connections()


def _session() -> smtplib.SMTP:
    target = (settings.VACATION_SMTP_HOST, settings.VACATION_SMTP_PORT)
    if _connections.smtp is not None and _connections.target == target:
        return _connections.smtp
    close_session()
    smtp = smtplib.SMTP(*target, timeout=30)
    # The final "." follows the content as a separate small write; with Nagle's algorithm it
    # would wait for the ACK of the content, which the server delays (~40 ms per reply).
    assert smtp.sock is not None  # the constructor connected
    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _connections.smtp, _connections.target = smtp, target
    return smtp


def close_session() -> None:
    """End the thread's session politely (QUIT), e.g. when the responder stops."""
    smtp, _connections.smtp = _connections.smtp, None
    if smtp is not None:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def _drop_session() -> None:
    """Close the connection without another word: in the middle of DATA a QUIT would be read
    as content, and a session that failed may not answer one."""
    smtp, _connections.smtp = _connections.smtp, None
    if smtp is not None:
        smtp.close()


def _refusal(step: str, code: int, text: bytes) -> Exception:
    message = f"{step}: {code} {text.decode('utf-8', 'replace')}"
    return ReplyRefused(message) if 500 <= code < 600 else ReplyNotAccepted(message)


def _envelope(smtp: smtplib.SMTP, recipient: str, size: int) -> None:
    """MAIL FROM:<>, RCPT TO and DATA; raise unless the server is ready for the content, leaving
    the session ready for the next reply. With PIPELINING (Postfix) the three go in one write
    and cost one round trip instead of three."""
    smtp.ehlo_or_helo_if_needed()
    options = f" SIZE={size}" if smtp.has_extn("size") else ""
    steps = [(f"MAIL FROM:<>{options}", (250,)), (f"RCPT TO:<{recipient}>", (250, 251)), ("DATA", (354,))]
    replies: list[tuple[int, bytes]] = []
    if smtp.has_extn("pipelining"):
        smtp.send("".join(f"{command}\r\n" for command, _ in steps))
        replies = [smtp.getreply() for _ in steps]
    else:
        for command, expected in steps:
            smtp.putcmd(command)
            replies.append(smtp.getreply())
            if replies[-1][0] not in expected:
                break
    closing = [text for code, text in replies if code == 421]
    if closing:
        # The server is closing this session (e.g. Postfix after its idle timeout): like a
        # closed connection, so a reused session is replaced and the reply tried once more.
        _drop_session()
        raise smtplib.SMTPServerDisconnected(f"421 {closing[0].decode('utf-8', 'replace')}")
    answered = zip(steps[: len(replies)], replies, strict=True)
    refused = [(command, reply) for (command, expected), reply in answered if reply[0] not in expected]
    if not refused:
        return
    if replies[-1][0] == 354:  # a server that took DATA after a refusal: only closing ends it
        _drop_session()
    else:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            _drop_session()
    command, (code, text) = refused[0]
    raise _refusal(command.split(":", 1)[0], code, text)


def _start_transaction(recipient: str, size: int) -> smtplib.SMTP:
    """A session at the start of DATA. A reused session Postfix has meanwhile closed is
    replaced once; nothing was handed over on it."""
    for attempt in (1, 2):
        reused = _connections.smtp is not None
        try:
            smtp = _session()
            _envelope(smtp, recipient, size)
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            _drop_session()
            if attempt == 2 or not reused:  # a fresh connection that fails is a real failure
                raise ReplyNotAccepted(str(exc)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            _drop_session()
            raise ReplyNotAccepted(str(exc)) from exc
    raise AssertionError("unreachable")


def hand_over(content: bytes, recipient: str, before_end: Callable[[], None]) -> None:
    """Hand the reply to Postfix with an empty envelope sender, to the envelope sender only,
    calling `before_end` once the whole content is out and before the final ".".

    Returns once Postfix has accepted the reply. If `before_end` raises, the connection is
    closed without the "." (Postfix then discards the partial message: nothing is queued) and
    the exception propagates. Raises ReplyNotAccepted or ReplyRefused otherwise."""
    if not ADDRESS_PATTERN.match(recipient):  # the rules make sure; this keeps CR/LF out of RCPT TO
        raise ReplyRefused("the recipient is not a usable address")
    smtp = _start_transaction(recipient, len(content))
    try:
        smtp.send(re.sub(rb"(?m)^\.", b"..", content))
    except (smtplib.SMTPException, OSError) as exc:
        _drop_session()
        raise ReplyNotAccepted(f"content: {exc}") from exc
    try:
        before_end()
    except BaseException:
        _drop_session()  # without the final ".": Postfix discards what it got
        raise
    try:
        smtp.send(b".\r\n")
        code, text = smtp.getreply()
    except (smtplib.SMTPException, OSError) as exc:
        _drop_session()
        raise ReplyNotAccepted(f"end of data: {exc}") from exc
    if code != 250:
        raise _refusal("end of data", code, text)
