"""Celery tasks publishing this host's Postfix tables. They take no arguments: each run
re-reads the database, so running twice, late or on several workers is harmless."""

import logging
from typing import Any

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready
from django.conf import settings

from postfix import publication

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def publish_maps() -> str:
    return publication.publish_queued().status


@shared_task(ignore_result=True)
def reconcile_maps() -> str:
    """Periodic: publishes what is pending (changes saved while the broker or the worker was
    down, expiries, a failed attempt, a skipped reload) and now and then renders everything."""
    return publication.publish(coalesce=False, full=True).status


@celeryd_after_setup.connect
def consume_host_queue(sender: str, instance: Any, **kwargs: Any) -> None:
    # Each mail host's worker also consumes maps.<MAIL_HOST>, where publications are queued.
    instance.app.amqp.queues.select_add(publication.queue_name(settings.MAIL_HOST))


@worker_ready.connect
def reconcile_on_start(sender: Any, **kwargs: Any) -> None:
    try:
        reconcile_maps.apply_async(queue=publication.queue_name(settings.MAIL_HOST), retry=False)
    except Exception as exc:
        logger.warning("reconcile at worker start not queued: %s", exc)
