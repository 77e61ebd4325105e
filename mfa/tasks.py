import logging

from celery import shared_task

from mfa import services

log = logging.getLogger(__name__)


@shared_task
def send_reset_notices() -> None:
    """Celery beat: notices Postfix could not take when the reset happened."""
    unsent = services.send_pending_notices()
    if unsent:
        log.warning("%d second-factor reset notices still unsent; retrying on the next run", unsent)
