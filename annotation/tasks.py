"""Celery jobs of the annotation app (queue `default`)."""

from celery import shared_task

from annotation.services.exports import export_run


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def export_run_task(export_id: int) -> None:
    """Write export `export_id`. Idempotent: a finished export is left as it is (see `export_run`)."""
    export_run(export_id=export_id)
