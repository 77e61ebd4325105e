"""Building, sending and recording one vacation reply.

A reply is made only of the user's own text: nothing of the original message is copied
into it except its Message-ID (for In-Reply-To/References), and only if well-formed.
"""

import re
import smtplib
import threading
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from django.conf import settings

from outofoffice.models import ReplyLog, VacationReply
from outofoffice.rules import LOOP_HEADER, Incoming

MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")
# Refuses CR/LF in any header value it serialises, on top of the validation at input.
REPLY_POLICY = SMTP.clone(max_line_length=998, raise_on_defect=True)


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


def build_reply(vacation: VacationReply, incoming: Incoming, internal: bool, now: datetime) -> EmailMessage:
    message = EmailMessage(policy=REPLY_POLICY)
    message["From"] = vacation.address
    message["To"] = incoming.sender
    message["Subject"] = f"Auto: {vacation.subject or 'Out of office'}"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=vacation.address.rsplit("@", 1)[-1])
    original_id = incoming.first("message-id")
    if MESSAGE_ID.match(original_id):
        message["In-Reply-To"] = original_id
        message["References"] = original_id
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message[LOOP_HEADER] = "auto-replied"
    message.set_content(reply_text(vacation, internal), charset="utf-8")
    return message


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
    _connections.smtp = smtplib.SMTP(*target, timeout=30)
    _connections.target = target
    return _connections.smtp


def close_session() -> None:
    smtp, _connections.smtp = _connections.smtp, None
    if smtp is not None:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def send_reply(message: EmailMessage, recipient: str) -> None:
    """Hand the reply to Postfix with an empty envelope sender, to the envelope sender only.
    Returns once Postfix has accepted it; raises ReplyNotAccepted otherwise."""
    for attempt in (1, 2):
        reused = _connections.smtp is not None
        try:
            _session().send_message(message, from_addr="", to_addrs=[recipient])
            return
        except smtplib.SMTPServerDisconnected as exc:
            close_session()
            if attempt == 2 or not reused:  # a fresh connection that fails is a real failure
                raise ReplyNotAccepted(str(exc)) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(500 <= code < 600 for code in codes):
                raise ReplyRefused(f"recipient refused: {codes}") from exc
            raise ReplyNotAccepted(f"recipient refused: {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            # The session itself stays usable after a refused transaction.
            try:
                _session().rset()
            except (smtplib.SMTPException, OSError):
                close_session()
            if 500 <= exc.smtp_code < 600:
                raise ReplyRefused(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise ReplyNotAccepted(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            close_session()
            raise ReplyNotAccepted(str(exc)) from exc


def record_reply(vacation: VacationReply, sender: str, now: datetime) -> None:
    # One upsert statement: a single short write per reply.
    ReplyLog.objects.bulk_create(
        [ReplyLog(vacation=vacation, sender=sender, reply_key=vacation.reply_key, sent_at=now)],
        update_conflicts=True,
        unique_fields=["vacation", "sender", "reply_key"],
        update_fields=["sent_at"],
    )
