"""A run's settings: what ops may override, how the overrides are checked when a run is queued,
and the full `RewardConfig` the job resolves from its row; where the run's folders live."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from django.conf import settings

from core.errors import ErrorCode, ServiceError
from training.ml.backbones import POOLING_SETTINGS
from training.models import RewardModel
from training.selectors import snapshot_choices

# The job's soft time limit (seconds; the task's, the hard one is core.tasks' margin above it).
# The trainer gets a clean time limit a little shorter, so a long run stops and saves what it
# learned before Celery interrupts it.
JOB_SOFT_TIME_LIMIT_S = int(getattr(settings, "REWARD_JOB_TIME_LIMIT_S", 6 * 3600))
_TRAINER_TIME_MARGIN_S = 600

# What ops may set from the page, the API or the command line (the backbone is a filesystem
# path, so only the command line and settings choose it; see `reward_model_run_create`).
CONFIG_OVERRIDES: dict[str, tuple[type, float | None, float | None]] = {
    "epochs": (int, 1, 100),
    "batch_size": (int, 1, 1024),
    "learning_rate": (float, 1e-8, 1.0),
    "max_length": (int, 16, 8192),
    "seed": (int, 0, 2**31 - 1),
    "heldout_fraction": (float, 0.0, 0.9),
    "max_steps": (int, 1, 10**7),
    "time_limit_s": (float, 1.0, 7 * 24 * 3600.0),
    "weight_decay": (float, 0.0, 1.0),
    "warmup_ratio": (float, 0.0, 1.0),
    "threads": (int, 1, 256),
    # Heads of the reward-head ensemble the "ensemble" pair selection reads (0: none).
    "ensemble_heads": (int, 0, 64),
    # The promotion gate (training.ml.promotion): held-out pairs needed, and how much worse than
    # the active model (in accuracy, on the same pairs) a candidate may be.
    "gate_min_pairs": (int, 1, 10**7),
    "gate_margin": (float, 0.0, 0.5),
    # Rater quality: people's votes only from raters with at least this trust (0: all). Resolved
    # into the raters left out when the run is queued (`exclude_raters`, in its config and
    # snapshot counts), so the run trains on the same votes however trust moves later.
    "min_trust": (float, 0.0, 1.0),
}
MODE_OVERRIDES = {
    "tie_mode": ("drop", "equal"),
    "both_bad_mode": ("drop", "equal"),
    "pooling": POOLING_SETTINGS,
    # Rater quality: "trust" weights each person's vote in the loss by their rater's trust,
    # resolved into `rater_weights` ({rater id: trust}) when the run is queued, so the run trains
    # on the same weights however trust moves later (in its config; the snapshot's hash covers
    # them and its counts say `weighting: "trust"`). "none" (the default): every vote weighs 1.
    "vote_weights": ("none", "trust"),
    # Gold pairs (annotation.services.gold) measure raters; like exports, a run leaves votes on
    # them out unless it asks for them ("include"). Recorded in the config when queued.
    "gold": ("exclude", "include"),
}
# Settings of the run's snapshot rather than of the trainer: kept in the run's config beside
# the resolved RewardConfig (the job reads them again to rebuild the snapshot it was queued on).
SNAPSHOT_KEYS = ("min_trust", "exclude_raters", "vote_weights", "rater_weights", "gold")


def reward_dir(*, project_id: int, run_id: int) -> Path:
    return Path(settings.MODELS_DIR) / "reward" / str(project_id) / str(run_id)


def safety_dir(*, project_id: int, run_id: int) -> Path:
    return Path(settings.MODELS_DIR) / "safety" / str(project_id) / str(run_id)


def default_backbone() -> str:
    if settings.REWARD_BACKBONE:
        return str(settings.REWARD_BACKBONE)
    from training.ml.backbones import default_minilm_dir

    return str(default_minilm_dir())


def _number(key: str, value) -> int | float:
    kind, low, high = CONFIG_OVERRIDES[key]
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):  # float(10**400) overflows
        raise ServiceError(f"{key} must be a number.", code=ErrorCode.CONFIG) from None
    if isinstance(value, float) and kind is int and value != int(value):
        raise ServiceError(f"{key} must be a whole number.", code=ErrorCode.CONFIG)
    if not (low <= number <= high) or (kind is float and not math.isfinite(number)):
        raise ServiceError(f"{key} must be between {low:g} and {high:g}.", code=ErrorCode.CONFIG)
    return number


def overrides_clean(overrides: dict | None) -> dict:
    """The overrides a run is queued with, checked (ServiceError "config" on the first bad one);
    empty values are dropped so they keep the defaults."""
    clean: dict = {}
    for key, value in (overrides or {}).items():
        if value is None or value == "":
            continue
        if key in MODE_OVERRIDES:
            if value not in MODE_OVERRIDES[key]:
                raise ServiceError(
                    f"{key} must be one of {', '.join(MODE_OVERRIDES[key])}.", code=ErrorCode.CONFIG
                )
            clean[key] = value
        elif key in CONFIG_OVERRIDES:
            clean[key] = _number(key, value)
        else:
            raise ServiceError(f"Unknown setting {key!r} for a reward-model run.", code=ErrorCode.CONFIG)
    return clean


def snapshot_weights(config: dict) -> dict | None:
    """The per-rater vote weights of a run's snapshot: its `rater_weights` when it weights votes
    by trust, else None (unweighted)."""
    if config.get("vote_weights") != "trust":
        return None
    return dict(config.get("rater_weights") or {})


def snapshot_gold(config: dict) -> str:
    """Whether a queued run's snapshot has the votes on gold pairs: its recorded `gold`; a run
    queued before the setting existed (no key) trained on them, so "include" keeps its hash."""
    return config.get("gold", "include")


def choices_for(config: dict) -> tuple[str, ...]:
    """The vote choices a run with these overrides trains on."""
    return snapshot_choices(
        include_ties=config.get("tie_mode", "drop") != "drop",
        include_both_bad=config.get("both_bad_mode", "drop") != "drop",
    )


def config_resolve(run: RewardModel):
    """The full RewardConfig of `run`: its overrides, its backbone, and a trainer time limit
    that ends before Celery's."""
    from training.ml.reward import RewardConfig

    names = {f.name for f in dataclasses.fields(RewardConfig)}
    values = {k: v for k, v in (run.config or {}).items() if k in names}
    if isinstance(values.get("strength_margins"), list):
        values["strength_margins"] = tuple(values["strength_margins"])
    values["backbone"] = run.backbone
    if values.get("time_limit_s") is None:
        values["time_limit_s"] = float(max(60, JOB_SOFT_TIME_LIMIT_S - _TRAINER_TIME_MARGIN_S))
    return RewardConfig(**values)


def gate_settings(config: dict) -> dict:
    """The run's promotion-gate settings: its overrides, else the defaults."""
    from training.ml.promotion import DEFAULT_MARGIN, DEFAULT_MIN_PAIRS

    return {
        "gate_min_pairs": int(config.get("gate_min_pairs") or DEFAULT_MIN_PAIRS),
        "gate_margin": float(config.get("gate_margin", DEFAULT_MARGIN)),
    }


def jsonable(values: dict) -> dict:
    """`values` fit for a JSONField: non-finite floats become None, tuples lists, the rest str."""
    out = {}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, str | int | float | bool | type(None) | list | dict):
            value = str(value)
        out[key] = value
    return out
