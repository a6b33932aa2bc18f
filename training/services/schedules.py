"""Round settings and schedules: a django-celery-beat PeriodicTask per project, and a trigger on
new preferences.

- Periodic: `every_hours` (an IntervalSchedule, in minutes for a fraction of an hour) or
  `cron` (a CrontabSchedule, five fields in settings.TIME_ZONE) fires
  `training.tasks.scheduled_round_task(project_id)`. Switched off, the beat task is disabled,
  not deleted, so its last run and run count survive.
- Preferences: with `min_new_preferences` = M, a single beat task
  (`training.tasks.round_triggers_task`, every settings.ROUND_TRIGGER_CHECK_S seconds) starts a
  round in each project where at least M A/B votes arrived after the newest snapshot a reward
  model was trained on (promoted or not: an unpromoted one must not leave its votes "new"
  forever); the round retrains the reward model first.

Either way the start goes through `round_start`, so a schedule firing while a round runs (or
at the same moment as a manual start) makes no second round. Both ticks run on the light
`default` queue (config/settings.py routes them there), never behind a round on `gpu`: a tick
that fires while a round runs is skipped, and every tick records when it ran and what it did
(`RoundSettings.last_tick_at` / `last_tick`, shown on the rounds page).

The over-optimisation guard (`training.services.gates`) pauses a schedule with a reason
(`schedule_pause`: disabled, its beat task disabled, `paused_reason` set); neither the schedule
nor the trigger starts a round while it is paused, until ops resume it (`schedule_resume`).
One more beat task, `training.tasks.round_gates_check_task` every minute, checks the policy
gates of rounds awaiting evaluation (`gates_beat_ensure`, written when a round starts waiting).
"""

from __future__ import annotations

import json

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from annotation.models import Project
from core.errors import ErrorCode, ServiceError
from training.models import PolicyEvent, RLHFRound, RoundSettings
from training.round_selectors import new_preferences_count, round_active
from training.services.rounds import blocklist_compile, round_settings_get, round_start

SCHEDULED_TASK = "training.tasks.scheduled_round_task"
TRIGGERS_TASK = "training.tasks.round_triggers_task"
TRIGGERS_TASK_NAME = "rlhf-round-triggers"
GATES_TASK = "training.tasks.round_gates_check_task"
GATES_TASK_NAME = "rlhf-round-gates"
GATES_CHECK_MINUTES = 1

EDITABLE_FIELDS = (
    "prompts_per_round", "candidates_per_prompt", "temperature", "top_p", "max_new_tokens",
    "toxicity_threshold", "toxicity_lambda", "unsafe_budget", "lambda_step", "blocklist", "pairs_to_publish",
    "strategy", "priority",
    "beta", "learning_rate", "dpo_epochs", "dpo_batch_size", "dpo_max_steps", "update_method", "reward_config",
    "enabled", "every_hours", "cron", "min_new_preferences",
    "policy_gate", "gate_threshold", "gate_min_votes", "eval_judge", "eval_prompts", "eval_samples",
    "eval_max_new_tokens", "eval_priority", "kl_budget", "keep_checkpoints",
    "missing_eos_penalty", "vote_max_uses", "human_pairs_ratio", "explore_rate",
)  # fmt: skip

# The settings' names before release 0003, still taken on input (service, API) for the new ones.
SETTING_ALIASES = {"n": "candidates_per_prompt", "budget": "pairs_to_publish"}


def setting_aliases_resolve(fields: dict) -> dict:
    """`fields` with the old names (SETTING_ALIASES) under their new ones; ServiceError when an
    old name and its new one are both given with different values."""
    out = dict(fields)
    for old, new in SETTING_ALIASES.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out and out[new] != value:
            raise ServiceError(
                f"{old!r} is the old name of {new!r}; give one of them, not both with different values.",
                code=ErrorCode.INVALID,
            )
        out[new] = value
    return out


def _task_name(project_id: int) -> str:
    return f"rlhf-round-project-{project_id}"


# A cron line's five fields, in order, under celery's and django-celery-beat's names.
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def _crontab(cron: str, tz: str) -> CrontabSchedule:
    parts = cron.split()
    if len(parts) != len(CRON_FIELDS):
        raise ServiceError(
            "cron needs five fields: minute hour day-of-month month day-of-week.", code=ErrorCode.CRON
        )
    fields = dict(zip(CRON_FIELDS, parts, strict=True))
    from celery.schedules import crontab

    try:  # celery parses (and refuses) the fields the way beat will
        crontab(**fields)
    except (ValueError, TypeError) as exc:
        raise ServiceError(f"cron {cron!r} is not valid: {exc}", code=ErrorCode.CRON) from None
    schedule, _ = CrontabSchedule.objects.get_or_create(**fields, timezone=tz)
    return schedule


def _sync_periodic_task(row: RoundSettings) -> None:
    from django.conf import settings

    name = _task_name(row.project_id)
    if not row.enabled or not (row.every_hours or row.cron):
        # Disabled, not deleted: the beat task keeps its history (last run, run count).
        PeriodicTask.objects.filter(name=name).update(enabled=False)
        return
    defaults = {"task": SCHEDULED_TASK, "args": json.dumps([row.project_id]), "enabled": True}
    if row.cron:
        defaults.update(crontab=_crontab(row.cron, settings.TIME_ZONE), interval=None)
    else:
        defaults.update(interval=_every_hours(row.every_hours), crontab=None)
    task, _ = PeriodicTask.objects.update_or_create(name=name, defaults=defaults)
    row.periodic_task = task
    RoundSettings.objects.filter(pk=row.pk).update(periodic_task=task)


def _every_hours(hours: float) -> IntervalSchedule:
    """Whole hours as hours, else whole minutes (every_hours 0.5 = every 30 minutes)."""
    if float(hours).is_integer():
        return _every(int(hours), IntervalSchedule.HOURS)
    return _every(max(1, round(hours * 60)), IntervalSchedule.MINUTES)


def _every(every: int, period: str = IntervalSchedule.MINUTES) -> IntervalSchedule:
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
    return interval


def _beat_task_enable(name: str, task: str, interval: IntervalSchedule) -> None:
    PeriodicTask.objects.update_or_create(
        name=name,
        defaults={
            "task": task,
            "interval": interval,
            "crontab": None,
            "args": "[]",
            "enabled": True,
        },
    )


def gates_beat_ensure() -> None:
    """The beat task that checks the policy gates of rounds awaiting evaluation, every minute."""
    _beat_task_enable(GATES_TASK_NAME, GATES_TASK, _every(GATES_CHECK_MINUTES))


def _sync_triggers_task() -> None:
    wanted = RoundSettings.objects.filter(enabled=True, min_new_preferences__isnull=False).exists()
    if not wanted:
        PeriodicTask.objects.filter(name=TRIGGERS_TASK_NAME).update(enabled=False)
        return
    from django.conf import settings

    every = _every(max(1, int(settings.ROUND_TRIGGER_CHECK_S)), IntervalSchedule.SECONDS)
    _beat_task_enable(TRIGGERS_TASK_NAME, TRIGGERS_TASK, every)


@transaction.atomic
def round_settings_update(*, project: Project, **fields) -> RoundSettings:
    """Validate and save the project's round settings and (re)write its beat schedule. The old
    names `n` and `budget` are taken for `candidates_per_prompt` and `pairs_to_publish`."""
    fields = setting_aliases_resolve(fields)
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
    if unknown:
        raise ServiceError(f"Unknown round setting(s): {', '.join(unknown)}.", code=ErrorCode.INVALID)
    row = round_settings_get(project=project)
    row = RoundSettings.objects.select_for_update().get(pk=row.pk)
    if fields.get("enabled") and not row.enabled and row.paused_reason:
        raise ServiceError(
            f"The schedule was paused: {row.paused_reason} Resume it (Resume schedule) to enable it again.",
            code=ErrorCode.STATE,
        )
    for key, value in fields.items():
        setattr(row, key, value)
    row.cron = (row.cron or "").strip()
    if row.every_hours and row.cron:
        raise ServiceError("Give either every N hours or a cron line, not both.", code=ErrorCode.SCHEDULE)
    if row.enabled and not (row.every_hours or row.cron or row.min_new_preferences):
        raise ServiceError(
            "An enabled schedule needs every N hours, a cron line or a number of new preferences.",
            code=ErrorCode.SCHEDULE,
        )
    if not 0 <= row.toxicity_threshold <= 1:
        raise ServiceError("The toxicity threshold is a probability between 0 and 1.", code=ErrorCode.INVALID)
    if row.unsafe_budget is not None and not 0 <= row.unsafe_budget <= 1:
        raise ServiceError(
            "The unsafe budget is a rate between 0 and 1 (empty: λ stays fixed).", code=ErrorCode.INVALID
        )
    if row.lambda_step <= 0:
        raise ServiceError("The λ step size must be above 0.", code=ErrorCode.INVALID)
    if not isinstance(row.reward_config, dict):
        raise ServiceError("reward_config must be a JSON object.", code=ErrorCode.INVALID)
    from training.services.reward_models.config import overrides_clean

    row.reward_config = overrides_clean(row.reward_config)  # a reward-model run's override rules
    blocklist_compile(row.blocklist)
    from training.ml.policy import DPOUpdateConfig, GenerationParams

    try:
        GenerationParams(
            n=row.candidates_per_prompt,
            temperature=row.temperature,
            top_p=row.top_p,
            max_new_tokens=row.max_new_tokens,
        )
        DPOUpdateConfig(
            beta=row.beta,
            learning_rate=row.learning_rate,
            epochs=row.dpo_epochs,
            batch_size=row.dpo_batch_size,
            max_steps=row.dpo_max_steps,
            method=row.update_method,
        )
        row.full_clean(exclude=["project", "periodic_task"])
    except ValueError as exc:
        raise ServiceError(str(exc), code=ErrorCode.INVALID) from None
    except ValidationError as exc:
        raise ServiceError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()), code=ErrorCode.INVALID
        ) from None
    row.save()
    _sync_periodic_task(row)
    _sync_triggers_task()
    return row


def _tick_record(row: RoundSettings, what: str) -> None:
    """What the schedule's latest tick did (shown on the rounds page)."""
    row.last_tick_at, row.last_tick = timezone.now(), what[:500]
    RoundSettings.objects.filter(pk=row.pk).update(last_tick_at=row.last_tick_at, last_tick=row.last_tick)


def _tick_start(row: RoundSettings, trigger: str, why: str) -> tuple[RLHFRound | None, bool]:
    """Start a round for a tick, or skip (a round is running, no prompts) with the reason
    recorded. Ticks run on the light `default` queue, so a tick that fires while a round runs
    is skipped at once instead of waiting behind the round and starting another right after."""
    running = round_active(project_id=row.project_id)
    if running is not None:
        _tick_record(row, f"{why}: skipped, round {running.number} is running ({running.state}).")
        return running, False
    try:
        r, created = round_start(project=row.project, trigger=trigger)
    except ServiceError as exc:  # e.g. no prompts: nothing to start
        _tick_record(row, f"{why}: skipped, {exc.message}")
        return None, False
    if created:
        _tick_record(row, f"{why}: started round {r.number}.")
    else:
        _tick_record(row, f"{why}: skipped, round {r.number} is running ({r.state}).")
    return r, created


def schedule_fire(*, project_id: int) -> RLHFRound | None:
    """The periodic task: start a round unless the schedule was switched off meanwhile; a tick
    while a round runs is skipped (the running round is returned) and says so."""
    row = (
        RoundSettings.objects.filter(project_id=project_id, enabled=True, paused_reason="")
        .select_related("project")
        .first()
    )
    if row is None:
        return None
    r, _created = _tick_start(row, RLHFRound.Trigger.SCHEDULE, "Schedule")
    return r


def schedule_triggers_check() -> list[RLHFRound]:
    """Start a round wherever at least M new A/B votes arrived since the newest trained snapshot."""
    started = []
    rows = RoundSettings.objects.filter(enabled=True, paused_reason="", min_new_preferences__isnull=False)
    for row in rows.select_related("project"):
        count = new_preferences_count(project=row.project)
        why = f"{count} of {row.min_new_preferences} new preferences"
        if count < row.min_new_preferences:
            _tick_record(row, f"{why}: no round.")
            continue
        r, created = _tick_start(row, RLHFRound.Trigger.PREFERENCES, why)
        if created:
            started.append(r)
    return started


def _schedule_set(row: RoundSettings, **fields) -> None:
    for key, value in fields.items():
        setattr(row, key, value)
    row.save(update_fields=[*fields, "updated_at"])
    _sync_periodic_task(row)
    _sync_triggers_task()


@transaction.atomic
def schedule_pause(
    *, project: Project, reason: str, round: RLHFRound | None = None, numbers: dict | None = None
) -> RoundSettings:
    """Pause the project's schedule with a reason shown on the rounds page (the guard's): it is
    disabled and its beat task disabled (kept with its history), as switching it off does; a "paused" policy event
    records why. Pausing a paused schedule changes nothing."""
    row = RoundSettings.objects.select_for_update().get(pk=round_settings_get(project=project).pk)
    if row.paused_reason:
        return row
    was_enabled = row.enabled
    _schedule_set(row, enabled=False, paused_reason=reason)
    PolicyEvent.objects.create(
        project=project,
        kind=PolicyEvent.Kind.PAUSED,
        round=round,
        reason=reason,
        numbers={**(numbers or {}), "schedule_was_enabled": was_enabled},
    )
    return row


@transaction.atomic
def schedule_resume(*, project: Project, by: AbstractBaseUser | None = None) -> RoundSettings:
    """Ops resume a paused schedule: the reason is cleared, the schedule enabled again if it was
    enabled when paused, and a "resumed" policy event records who."""
    row = RoundSettings.objects.select_for_update().get(pk=round_settings_get(project=project).pk)
    if not row.paused_reason:
        raise ServiceError("The schedule is not paused.", code=ErrorCode.STATE)
    paused = PolicyEvent.objects.filter(project=project, kind=PolicyEvent.Kind.PAUSED).first()
    enable = bool(paused.numbers.get("schedule_was_enabled")) if paused is not None else False
    reason = row.paused_reason
    _schedule_set(row, enabled=enable, paused_reason="")
    PolicyEvent.objects.create(
        project=project,
        kind=PolicyEvent.Kind.RESUMED,
        by=by,
        reason=f"Resumed after: {reason}",
        numbers={"schedule_enabled": enable},
    )
    return row
