import logging

from celery import shared_task

from notices import services

log = logging.getLogger(__name__)


@shared_task
def send_pending_notices() -> None:
    """Celery beat: notices Postfix could not take when they were made."""
    unsent = services.send_pending()
    if unsent:
        log.warning("%d notices still unsent; retrying on the next run", unsent)
