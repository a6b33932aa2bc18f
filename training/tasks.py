"""Celery jobs of the training app (routed to the `gpu` queue by config/settings.py, except the
light periodic ticks: the schedule, the preference trigger and the gate check go to `default`,
so a tick never waits behind a round)."""

from core.tasks import task
from training.services.evaluations import JOB_SOFT_TIME_LIMIT_S as EVALUATION_TIME_LIMIT_S
from training.services.evaluations import evaluation_run
from training.services.judges import JOB_SOFT_TIME_LIMIT_S as JUDGE_TIME_LIMIT_S
from training.services.judges import judge_run_execute
from training.services.reward_models import JOB_SOFT_TIME_LIMIT_S as REWARD_TIME_LIMIT_S
from training.services.reward_models import reward_model_train
from training.services.rounds import JOB_SOFT_TIME_LIMIT_S as ROUND_TIME_LIMIT_S
from training.services.rounds import round_run
from training.services.schedules import schedule_fire, schedule_triggers_check


@task(time_limit_s=REWARD_TIME_LIMIT_S)
def train_reward_model_task(run_id: int) -> None:
    """Train reward-model run `run_id`. Idempotent: see `reward_model_train`."""
    reward_model_train(run_id=run_id)


@task(time_limit_s=ROUND_TIME_LIMIT_S)
def run_round_task(round_id: int) -> None:
    """Advance round `round_id` to its end. Idempotent and resumable: see `round_run`."""
    round_run(round_id=round_id)


@task()
def scheduled_round_task(project_id: int) -> None:
    """Fired by the project's beat schedule (on `default`): start a round, or skip with a
    recorded reason while one is running."""
    schedule_fire(project_id=project_id)


@task()
def round_triggers_task() -> None:
    """Fired by beat: start rounds where enough new preferences arrived."""
    schedule_triggers_check()


@task(time_limit_s=JUDGE_TIME_LIMIT_S)
def judge_run_task(run_id: int) -> None:
    """Rate the queue with judge run `run_id`. Idempotent and resumable: see `judge_run_execute`."""
    judge_run_execute(run_id=run_id)


@task(time_limit_s=EVALUATION_TIME_LIMIT_S)
def evaluation_run_task(evaluation_id: int) -> None:
    """Generate and publish evaluation `evaluation_id`'s pairs and measure its challenger.
    Idempotent and resumable: see `evaluation_run`."""
    evaluation_run(evaluation_id=evaluation_id)


@task()
def round_gates_check_task() -> None:
    """Fired by beat every minute: decide the rounds awaiting evaluation whose votes allow it."""
    from training.services.gates import round_gates_check_all

    round_gates_check_all()
