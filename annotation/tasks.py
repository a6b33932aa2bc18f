"""Celery jobs of the annotation app (queue `default`)."""

from annotation.services.exports import export_run
from core.tasks import task

EXPORT_TIME_LIMIT_S = 6 * 3600 - 60


@task(time_limit_s=EXPORT_TIME_LIMIT_S)
def export_run_task(export_id: int) -> None:
    """Write export `export_id`. Idempotent: a finished export is left as it is (see `export_run`)."""
    export_run(export_id=export_id)


@task(time_limit_s=600)
def quality_refresh_all_task() -> None:
    """Rater quality: refresh the projects rated in the last hour (beat, QUALITY_REFRESH_S)."""
    from annotation.quality.service import quality_refresh_all

    quality_refresh_all()
