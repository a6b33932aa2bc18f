"""Reward-model runs: queue, train (the Celery job's one service), cancel, promote.

A run is a `RewardModel` row, a job of the kernel (`core.jobs`). `reward_model_run_create`
fixes the preference snapshot and enqueues `train_reward_model_task` on commit; the task calls
`reward_model_train(run_id=)`, which runs the job through `job_run` and adapts the row to
`training.ml.reward.train_reward_model` and back.

- `config`: the overrides ops may set, their checks, the resolved RewardConfig, the folders.
- `lifecycle`: queue, cancel, promote by hand, activate.
- `train`: the job body (snapshot -> train -> safety classifier -> promotion gate -> record).
- `records`: preference rows -> the trainer's pairs and safety examples.
The promotion rule itself is `training.ml.promotion.promotion_decide` (pure), the gate of
`training.ml.gates.reward_model_gate` on per-pair correctness of both models.
"""

from training.ml.backbones import POOLING_SETTINGS

from .config import (
    CONFIG_OVERRIDES,
    JOB_SOFT_TIME_LIMIT_S,
    MODE_OVERRIDES,
    default_backbone,
    reward_dir,
    safety_dir,
)
from .lifecycle import reward_model_cancel, reward_model_promote, reward_model_run_create
from .records import preference_records
from .train import reward_model_train

__all__ = [
    "CONFIG_OVERRIDES",
    "JOB_SOFT_TIME_LIMIT_S",
    "MODE_OVERRIDES",
    "POOLING_SETTINGS",
    "default_backbone",
    "preference_records",
    "reward_dir",
    "reward_model_cancel",
    "reward_model_promote",
    "reward_model_run_create",
    "reward_model_train",
    "safety_dir",
]
