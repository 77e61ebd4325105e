"""Mail the app itself sends to people (notices), handed to Postfix over SMTP.

The one place where the web app and the workers submit mail: `notice()` builds a plain
message, `send()` hands it over with an explicit envelope and raises MailNotSent when Postfix
took it for nobody, so the caller can keep it and try again. Postfix then queues, retries and
applies its own restrictions (a sender suspension included). The vacation responder has its
own long-lived session (outofoffice/replies.py): it sends with the null sender at a rate this
function is not built for.
"""

import smtplib
import socket
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from django.conf import settings
from django.utils import timezone

TIMEOUT_SECONDS = 30


class MailNotSent(Exception):
    """Postfix did not take the message (unreachable, or it refused): nothing was sent."""


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
