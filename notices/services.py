"""Notices: short plain mails the app sends to people, kept in the database until Postfix took
them. Queued inside the caller's transaction.

It is handed to Postfix right after the commit (a local SMTP hand-over takes milliseconds); one
Postfix could not take then is retried by beat (notices/tasks.py).

Every notice goes out with the null envelope sender: nothing answers it, no bounce loops back,
and a suspended person's own sender check never applies to it. It never quotes anyone's mail.
Per recipient address at most NOTICE_MAX_PER_HOUR are sent in an hour; the rest are kept as
`skipped`, so a flood of automatic suspensions cannot turn into a flood of notices.
"""

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from mailadmin import outgoing_mail
from notices.models import Notice

log = logging.getLogger(__name__)

RETRY_DAYS = 3
BUSY_TRIES = 5
T = TypeVar("T")
SIGNATURE = "\n-- \nmailadmin (an automatic message)\n"


def _when_free(work: Callable[[], T]) -> T:
    """Run a short database step, again a moment later while the database is busy (SQLite's
    lock; several threads of the policy service write at once). A savepoint inside a caller's
    transaction, so a busy try undoes only itself."""
    for attempt in range(1, BUSY_TRIES + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError:
            if attempt == BUSY_TRIES:
                raise
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def queue(to_address: str, subject: str, body: str, kind: str) -> Notice | None:
    """Record a notice and send it once the caller's transaction commits.
    None when the address is unusable or has had its share of notices this hour."""
    to_address = to_address.strip()
    if not to_address or any(c in to_address for c in "\r\n\t <>,") or "@" not in to_address:
        log.warning("%s notice not queued: unusable address %r", kind, to_address)
        return None

    def record() -> tuple[Notice, int]:
        since = timezone.now() - timedelta(hours=1)
        recent = Notice.objects.filter(to_address__iexact=to_address, created_at__gte=since, skipped=False).count()
        notice = Notice.objects.create(
            to_address=to_address,
            subject=subject[:200],
            body=body + SIGNATURE,
            kind=kind,
            skipped=recent >= settings.NOTICE_MAX_PER_HOUR,
        )
        return notice, recent

    notice, recent = _when_free(record)
    if notice.skipped:
        log.warning("%s notice to %s held back: %d already sent this hour", kind, to_address, recent)
        return notice
    transaction.on_commit(lambda: send(notice.pk))
    return notice


def send(notice_id: int) -> bool:
    """Hand one notice to Postfix; True once it is sent (or never will be)."""
    notice = _when_free(lambda: Notice.objects.filter(pk=notice_id, sent_at__isnull=True, skipped=False).first())
    if notice is None:
        return True
    unsent = Notice.objects.filter(pk=notice.pk)
    try:
        message = outgoing_mail.notice(notice.to_address, notice.subject, notice.body)
        outgoing_mail.send(message, sender="", recipients=[notice.to_address])
    except outgoing_mail.MailNotSent as exc:
        log.warning("%s notice %s not sent yet: %s", notice.kind, notice.pk, exc)
        error = str(exc)[:500]
        _when_free(lambda: unsent.update(attempts=notice.attempts + 1, last_error=error))
        return False
    _when_free(lambda: unsent.update(sent_at=timezone.now(), attempts=notice.attempts + 1, last_error=""))
    return True


def send_pending(now: datetime | None = None) -> int:
    """Retry notices not sent at once (beat); returns how many are still unsent."""
    now = now or timezone.now()
    waiting = Notice.objects.filter(
        sent_at__isnull=True,
        skipped=False,
        created_at__lt=now - timedelta(seconds=30),
        created_at__gte=now - timedelta(days=RETRY_DAYS),
    ).values_list("pk", flat=True)
    return sum(not send(pk) for pk in waiting)
