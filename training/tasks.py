"""Celery jobs of the training app (routed to the `gpu` queue by config/settings.py)."""

from celery import shared_task

from training.services.reward_models import JOB_SOFT_TIME_LIMIT_S, JOB_TIME_LIMIT_S, reward_model_train


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
