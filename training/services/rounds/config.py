"""A round's settings: the project's `RoundSettings` row, the copy each round keeps, the blocklist."""

from __future__ import annotations

from annotation.models import Project
from core.errors import ErrorCode, ServiceError
from training.ml.blocklist import BlocklistError, Patterns, blocklist_parse
from training.models import RoundSettings

# RoundSettings fields copied into every new round's `config` (the round keeps its own copy).
CONFIG_FIELDS = (
    "prompts_per_round",
    "candidates_per_prompt",
    "temperature",
    "top_p",
    "max_new_tokens",
    "toxicity_threshold",
    "toxicity_lambda",
    "unsafe_budget",
    "lambda_step",
    "blocklist",
    "pairs_to_publish",
    "strategy",
    "priority",
    "beta",
    "learning_rate",
    "dpo_epochs",
    "dpo_batch_size",
    "dpo_max_steps",
    "update_method",
    "reward_config",
    "missing_eos_penalty",
    "vote_max_uses",
    "human_pairs_ratio",
    "explore_rate",
)


def round_settings_get(*, project: Project) -> RoundSettings:
    row, _ = RoundSettings.objects.get_or_create(project=project)
    return row


def config_from(row: RoundSettings) -> dict:
    return {name: getattr(row, name) for name in CONFIG_FIELDS}


def blocklist_compile(text: str) -> Patterns:
    """The blocklist's patterns (see `training.ml.blocklist`); ServiceError naming a bad regex."""
    try:
        return blocklist_parse(text)
    except BlocklistError as exc:
        raise ServiceError(str(exc), code=ErrorCode.BLOCKLIST) from None
