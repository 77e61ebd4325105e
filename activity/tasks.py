import logging

from celery import shared_task

from activity.services import prune_activity as prune

log = logging.getLogger("activity")


@shared_task
def prune_activity() -> None:
    deleted = prune()
    if any(deleted.values()):
        log.info("activity retention: deleted %s", ", ".join(f"{n} {what}" for what, n in deleted.items()))
