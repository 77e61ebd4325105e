"""The import's Celery tasks: they take a job's id (or nothing) and re-read the database, so a
task run twice, late or on two workers applies nothing twice (see bulk.services)."""

import logging

from celery import shared_task

from accounts import directory
from bulk import services

logger = logging.getLogger(__name__)


@shared_task(
    ignore_result=True,
    autoretry_for=(directory.DirectoryUnavailable, services.ImportBusy),
    retry_backoff=10,
    max_retries=30,
)
def run_import(job_id: int) -> str:
    return services.run_import(job_id)


@shared_task(ignore_result=True)
def resume_imports() -> int:
    """Periodic: jobs queued while the broker was down, or left by a worker that died; and
    passwords and files kept past their time are deleted."""
    services.forget_old_secrets()
    pending = services.jobs_to_resume()
    for job_id in pending:
        run_import.delay(job_id)
    return len(pending)
