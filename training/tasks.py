"""Celery jobs of the training app (routed to the `gpu` queue by config/settings.py)."""

from celery import shared_task

from training.services.reward_models import JOB_SOFT_TIME_LIMIT_S, JOB_TIME_LIMIT_S, reward_model_train
from training.services.rounds import JOB_SOFT_TIME_LIMIT_S as ROUND_SOFT_LIMIT_S
from training.services.rounds import JOB_TIME_LIMIT_S as ROUND_TIME_LIMIT_S
from training.services.rounds import round_run
from training.services.schedules import schedule_fire, schedule_triggers_check


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=JOB_TIME_LIMIT_S,
    soft_time_limit=JOB_SOFT_TIME_LIMIT_S,
)
def train_reward_model_task(self, run_id: int) -> None:
    """Train reward-model run `run_id`. Idempotent: see `reward_model_train`."""
    reward_model_train(run_id=run_id)


# --- RLHF rounds --------------------------------------------------------------------------


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=ROUND_TIME_LIMIT_S,
    soft_time_limit=ROUND_SOFT_LIMIT_S,
)
def run_round_task(self, round_id: int) -> None:
    """Advance round `round_id` to its end. Idempotent and resumable: see `round_run`."""
    round_run(round_id=round_id)


@shared_task(acks_late=True)
def scheduled_round_task(project_id: int) -> None:
    """Fired by the project's beat schedule: start a round unless one is running."""
    schedule_fire(project_id=project_id)


@shared_task(acks_late=True)
def round_triggers_task() -> None:
    """Fired by beat: start rounds where enough new preferences arrived."""
    schedule_triggers_check()
