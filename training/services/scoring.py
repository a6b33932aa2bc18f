"""`reward_score`: score (prompt, response) pairs with the project's active reward model.

Each worker process keeps the models it loaded, keyed by (row id, artefact sha256), and
checks the active row on every call (one indexed query): when ops promote another model the
next call loads it. A folder whose content no longer matches the hash recorded on its row is
refused rather than scored with.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from annotation.models import Project
from core.errors import ErrorCode, ServiceError
from training.models import RewardModel

if TYPE_CHECKING:
    from training.ml.shaping import Normalisation

_cache: dict[int, tuple[tuple[int, str], object]] = {}  # project id -> ((row id, sha), scorer)
_lock = threading.Lock()
SCORE_BATCH_SIZE = 32


def _active_key(project_id: int) -> tuple[int, str, str] | None:
    row = (
        RewardModel.objects.filter(project_id=project_id, is_active=True)
        .values_list("pk", "artefact_sha256", "artefact_path")
        .first()
    )
    return row


def scorer_load(path: str, sha256: str, *, what: str = "The active reward model"):
    """A RewardScorer from `path`, refused (ServiceError) when the folder is missing or does not
    match `sha256`. `what` names the model in the messages."""
    from training.ml.checkpoints import dir_sha256
    from training.ml.reward import RewardScorer

    try:
        actual = dir_sha256(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ServiceError(f"{what}'s folder {path} is missing.", code=ErrorCode.ARTEFACT) from None
    if actual != sha256:
        raise ServiceError(
            f"{what}'s folder {path} does not match the hash recorded for it; refusing to load it.",
            code=ErrorCode.ARTEFACT,
        )
    return RewardScorer.load(path)


def scorer_for(*, project_id: int):
    """(row id, scorer) of the project's active reward model, loaded at most once per process."""
    key = _active_key(project_id)
    if key is None:
        raise ServiceError("This project has no active reward model yet.", code=ErrorCode.NO_REWARD_MODEL)
    pk, sha, path = key
    with _lock:
        cached = _cache.get(project_id)
        if cached is not None and cached[0] == (pk, sha):
            return pk, cached[1]
        scorer = scorer_load(path, sha)
        _cache[project_id] = ((pk, sha), scorer)
        return pk, scorer


def reward_score(
    *,
    project: Project | int,
    prompts: Sequence[list[dict]],
    responses: Sequence[str],
    batch_size: int = SCORE_BATCH_SIZE,
) -> list[float]:
    """One reward per (prompt messages, response) from the active model, in input order."""
    if len(prompts) != len(responses):
        raise ServiceError("prompts and responses must have the same length.", code=ErrorCode.INVALID)
    if not responses:
        return []
    project_id = project if isinstance(project, int) else project.pk
    _, scorer = scorer_for(project_id=project_id)
    return [float(x) for x in scorer.score(list(prompts), list(responses), batch_size=batch_size)]


def reward_score_normalised(
    *, project: Project | int, prompts: Sequence[list[dict]], responses: Sequence[str]
) -> tuple[list[float], Normalisation]:
    """(raw rewards, the normalisation stored with the model that scored them): z(reward) is
    `norm.z(reward)` (training.ml.shaping)."""
    from training.ml.shaping import normalisation_of

    project_id = project if isinstance(project, int) else project.pk
    rewards = reward_score(project=project_id, prompts=prompts, responses=responses)
    pk, _ = scorer_for(project_id=project_id)
    metrics = RewardModel.objects.filter(pk=pk).values_list("metrics", flat=True).first()
    return rewards, normalisation_of(metrics)


def reward_head_scores(
    *, project: Project | int, prompts: Sequence[list[dict]], responses: Sequence[str]
) -> list[list[float]] | None:
    """Every head of the active reward model's ensemble (training.ml.ensemble): one list of K
    scores per (prompt messages, response), in input order; None when the model has no heads."""
    project_id = project if isinstance(project, int) else project.pk
    _, scorer = scorer_for(project_id=project_id)
    if scorer.heads is None:
        return None
    return scorer.head_scores(list(prompts), list(responses), batch_size=SCORE_BATCH_SIZE)


def scorer_cache_clear() -> None:
    with _lock:
        _cache.clear()
