import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from outofoffice.models import ReplyLog, VacationReply
from postfix.publication import request_publication

log = logging.getLogger(__name__)

# Older entries cannot hold back a reply: the longest interval is 365 days.
REPLY_LOG_KEEP = timedelta(days=366)


@shared_task
def sweep_vacations() -> None:
    """Celery beat: a vacation that ended lately leaves the Postfix maps (its copies stop), and
    reply-log entries too old to matter go. The responder stops replying at the end by itself."""
    now = timezone.now()
    recently = now - timedelta(seconds=3 * settings.VACATION_SWEEP_INTERVAL)  # a missed beat is caught
    with transaction.atomic():
        ended = list(
            VacationReply.objects.filter(enabled=True, ends_at__gt=recently, ends_at__lte=now).values_list(
                "address", flat=True
            )
        )
        if ended:
            request_publication(f"{len(ended)} vacation(s) ended", keys=ended)
    pruned, _ = ReplyLog.objects.filter(sent_at__lt=now - REPLY_LOG_KEEP).delete()
    if ended or pruned:
        log.info("vacation sweep: %s ended, %s old reply-log entries removed", len(ended), pruned)
