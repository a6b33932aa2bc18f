"""The one Celery task decorator of the project (Sentry's `instrumented_task`, smaller).

Every task: takes ids (never model instances), is acknowledged late and re-queued when its
worker dies (so a killed job is redelivered; the job kernel makes the rerun safe), gets a
soft time limit with a hard one five minutes later, and logs one line when it starts and one
when it ends, with its duration and outcome. The task name is the function's dotted path,
which the queue routes in settings match.
"""

from __future__ import annotations

import functools
import logging
import time

from celery import shared_task

log = logging.getLogger("core.tasks")

HARD_LIMIT_MARGIN_S = 300


def task(*, time_limit_s: int | None = None, **options):
    """Declare a Celery task with the house options (override any with `options`)."""

    def decorate(fn):
        name = f"{fn.__module__}.{fn.__name__}"

        @functools.wraps(fn)
        def run(*args, **kwargs):
            started = time.monotonic()
            log.info("task %s%s started", name, args)
            outcome = "failed"
            try:
                result = fn(*args, **kwargs)
                outcome = "done"
                return result
            finally:
                log.info("task %s%s %s in %.1f s", name, args, outcome, time.monotonic() - started)

        opts = {"name": name, "acks_late": True, "reject_on_worker_lost": True}
        if time_limit_s:
            opts.update(soft_time_limit=time_limit_s, time_limit=time_limit_s + HARD_LIMIT_MARGIN_S)
        opts.update(options)
        return shared_task(**opts)(run)

    return decorate


@task(expires=60)
def jobs_maintenance_task() -> None:
    """Fired by beat every JOB_HEARTBEAT_S (settings.CELERY_BEAT_SCHEDULE): send again the jobs
    whose worker died, remove crashed writes' temporary files (core.jobs.jobs_maintain)."""
    from core.jobs import jobs_maintain

    jobs_maintain()
