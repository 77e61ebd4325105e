"""Mail the app itself sends, handed to Postfix over SMTP: the one module that speaks SMTP.

Notices: `notice()` builds a plain message, `send()` hands it over with an explicit envelope
and raises MailNotSent when Postfix took it for nobody, so the caller can keep it and try
again. Postfix then queues, retries and applies its own restrictions (a sender suspension
included).

Vacation replies (outofoffice/replies.py): `send_with_null_sender()` hands one over on a
long-lived session per thread, with the null sender, at a rate a connection per message would
not reach. Every failure is a MailNotSent; MailRefused when the server refused for good.
"""

import re
import smtplib
import socket
import threading
from collections.abc import Callable, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from django.conf import settings
from django.utils import timezone

TIMEOUT_SECONDS = 30


class MailNotSent(Exception):
    """Postfix did not take the message (unreachable, or it refused): nothing was sent."""


class MailRefused(MailNotSent):
    """Postfix refused the message for good (5xx): sending it again would not change that."""


def notice(to: str, subject: str, body: str) -> EmailMessage:
    """A short text/plain message from NOTICE_SENDER, marked as sent by a program (RFC 3834),
    so vacation responders and list servers do not answer it."""
    if any(c in "\r\n" for c in to + subject):
        raise ValueError("header values are single lines")
    message = EmailMessage()
    message["From"] = Address("mailadmin", addr_spec=settings.NOTICE_SENDER)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(timezone.now())
    message["Message-ID"] = make_msgid(domain=settings.NOTICE_SENDER.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


def send(message: EmailMessage, *, sender: str, recipients: Sequence[str]) -> list[str]:
    """Hand one message to Postfix: MAIL FROM:<sender>, one RCPT TO per recipient. Returns the
    recipients Postfix refused while taking it for the others; MailNotSent when it took it for
    nobody (then nothing was sent, and trying again later sends it once)."""
    if not recipients:
        raise ValueError("no recipients")
    try:
        with smtplib.SMTP(
            settings.MAIL_SUBMISSION_HOST, settings.MAIL_SUBMISSION_PORT, timeout=TIMEOUT_SECONDS
        ) as smtp:
            smtp.ehlo(socket.getfqdn())
            refused = smtp.send_message(message, from_addr=sender, to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailNotSent(f"recipients refused: {sorted(exc.recipients)}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise MailNotSent(f"{settings.MAIL_SUBMISSION_HOST}:{settings.MAIL_SUBMISSION_PORT}: {exc}") from exc
    return sorted(refused)


class _Connections(threading.local):
    smtp: smtplib.SMTP | None = None
    target: tuple[str, int] | None = None


# One SMTP session per responder thread, reused: a new connection per reply would cost
# Postfix an smtpd hand-over each time.
_connections = _Connections()


def _session(target: tuple[str, int]) -> smtplib.SMTP:
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
    return MailRefused(message) if 500 <= code < 600 else MailNotSent(message)


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


def _start_transaction(target: tuple[str, int], recipient: str, size: int) -> smtplib.SMTP:
    """A session at the start of DATA. A reused session Postfix has meanwhile closed is
    replaced once; nothing was handed over on it."""
    for attempt in (1, 2):
        reused = _connections.smtp is not None
        try:
            smtp = _session(target)
            _envelope(smtp, recipient, size)
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            _drop_session()
            if attempt == 2 or not reused:  # a fresh connection that fails is a real failure
                raise MailNotSent(str(exc)) from exc
        except (smtplib.SMTPException, OSError) as exc:
            _drop_session()
            raise MailNotSent(str(exc)) from exc
    raise AssertionError("unreachable")


def send_with_null_sender(
    target: tuple[str, int], content: bytes, recipient: str, before_end: Callable[[], None]
) -> None:
    """Hand `content` (a whole message, CRLF lines) to the SMTP server at `target` on this
    thread's session: MAIL FROM:<>, one RCPT TO, calling `before_end` once the whole content is
    out and before the final ".".

    Returns once the server has accepted it. If `before_end` raises, the connection is closed
    without the "." (Postfix then discards the partial message: nothing is queued) and the
    exception propagates. Raises MailRefused (5xx) or MailNotSent otherwise."""
    if any(c in recipient for c in "\r\n<> "):
        raise MailRefused("the recipient is not a usable address")
    smtp = _start_transaction(target, recipient, len(content))
    try:
        smtp.send(re.sub(rb"(?m)^\.", b"..", content))
    except (smtplib.SMTPException, OSError) as exc:
        _drop_session()
        raise MailNotSent(f"content: {exc}") from exc
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
        raise MailNotSent(f"end of data: {exc}") from exc
    if code != 250:
        raise _refusal("end of data", code, text)
