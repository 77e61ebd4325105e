import logging

from celery import shared_task

from accounts import directory, suspension
from accounts.models import SenderSuspension

log = logging.getLogger(__name__)


@shared_task(autoretry_for=(directory.DirectoryUnavailable,), retry_backoff=10, max_retries=30)
def lift_suspension(suspension_id: int) -> None:
    """The ETA task queued when a suspension with an end is made; the sweep is the backstop."""
    row = SenderSuspension.objects.filter(pk=suspension_id).first()
    if row is None or row.lifted_at is not None or row.until is None:
        return
    suspension.lift_expired()


@shared_task
def sweep_suspensions() -> None:
    """Celery beat: lift ended suspensions, then make LDAP flags match the database."""
    suspension.lift_expired()
    try:
        suspension.reconcile()
    except directory.DirectoryUnavailable:
        log.warning("directory unavailable; sender-block flags will be reconciled on the next sweep")
