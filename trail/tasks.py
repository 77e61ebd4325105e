from celery import shared_task

from trail import services


@shared_task(ignore_result=True)
def delete_expired_records() -> int:
    """Celery beat, hourly: the delivery trail keeps TRAIL_RETENTION_DAYS days."""
    return services.delete_expired()
