"""Evaluations: pairs between two policy checkpoints on the project's held-out evaluation prompts.

`evaluation_create` queues an `Evaluation` job (settings from the project's `RoundSettings`:
eval_prompts, eval_samples, eval_max_new_tokens, eval_priority); `evaluation_run` is the job
body on the kernel (`core.jobs.job_run`), in four resumable phases:

1. prompts    `prompts_count` evaluation prompts drawn from the evaluation's seed, stored (in
              draw order) in `metrics["prompt_ids"]`, so a resumed run uses the same ones;
2. generate   each checkpoint samples `samples` responses per prompt, chunk by chunk, with the
              same seed per chunk for both (temperature from the row, top_p 1, stopping at the
              end of turn); each chunk's responses are written together with their safety verdict
              (toxicity as rounds score it, the round blocklist), keyed in `Response.metadata`
              ({"evaluation", "side", "sample_index"}): a restart generates only what is missing;
3. publish    one comparison per (prompt, sample) with both responses safe, at the evaluation's
              priority, with its unique `EvaluationPair` (checkpoint A is the challenger for an
              even sample index, the opponent for an odd one; the queue randomises screen sides);
4. metrics    of the challenger on its own samples: KL to the reference (the lineage's base) from
              sequence log-probs (only for temperature-1 samples), truncated fraction (no
              end-of-turn before the token limit), unsafe fraction, proxy reward under the active
              reward model. Rates carry a Wilson interval, means a normal interval, all with n.

A prompt a round has used (sampled or generated for) never becomes an evaluation prompt
(`prompts_mark_eval` refuses it), and rounds sample only "round" prompts.

Modules: this one (create, cancel), `prompts` (held-out prompts), `job` (the job body).
"""

from __future__ import annotations

import math
import random

from django.db import transaction

from annotation.models import Project
from core.errors import ErrorCode, NotFound, ServiceError
from core.jobs import job_cancel, job_event_on_commit
from training.models import Evaluation, PolicyCheckpoint, RLHFRound
from training.services.evaluations.job import JOB_SOFT_TIME_LIMIT_S, evaluation_run
from training.services.evaluations.prompts import eval_prompts_count, prompts_mark_eval
from training.services.policies import policy_root
from training.services.rounds.backends import http_backend_configured
from training.services.rounds.config import round_settings_get

__all__ = [
    "JOB_SOFT_TIME_LIMIT_S",
    "eval_prompts_count",
    "evaluation_cancel",
    "evaluation_create",
    "evaluation_run",
    "prompts_mark_eval",
    "round_evaluation_create",
]


def _enqueue_on_commit(evaluation_id: int) -> None:
    from training.tasks import evaluation_run_task

    transaction.on_commit(lambda: evaluation_run_task.delay(evaluation_id))


def evaluation_create(
    *,
    project: Project,
    challenger: PolicyCheckpoint,
    opponent: PolicyCheckpoint,
    round: RLHFRound | None = None,
    requested_by=None,
    enqueue: bool = True,
    seed: int | None = None,
    temperature: float = 1.0,
) -> Evaluation:
    """Queue an evaluation of `challenger` against `opponent` with the project's settings."""
    if challenger.pk == opponent.pk:
        raise ServiceError("An evaluation compares two different checkpoints.", code=ErrorCode.INVALID)
    if challenger.project_id != project.pk or opponent.project_id != project.pk:
        raise ServiceError("Both checkpoints must belong to this project.", code=ErrorCode.INVALID)
    if http_backend_configured():
        raise ServiceError(
            "Evaluations sample each checkpoint from its own folder; the generation server "
            "(GENERATION_BACKEND_URL) serves one model only, so it cannot evaluate two checkpoints.",
            code=ErrorCode.STATE,
        )
    available = eval_prompts_count(project_id=project.pk)
    if not available:
        raise ServiceError(
            "This project has no held-out evaluation prompts: import prompts with purpose 'eval' "
            "or hold out unused round prompts first.",
            code=ErrorCode.NO_PROMPTS,
        )
    row = round_settings_get(project=project)
    if not (temperature >= 0 and math.isfinite(temperature)) or (temperature == 0 and row.eval_samples > 1):
        raise ServiceError(
            "Temperature must be a finite number ≥ 0 (0, greedy, only with one sample per prompt).",
            code=ErrorCode.INVALID,
        )
    with transaction.atomic():
        ev = Evaluation.objects.create(
            project=project,
            challenger=challenger,
            opponent=opponent,
            round=round,
            prompts_count=min(row.eval_prompts, available),
            samples=row.eval_samples,
            max_new_tokens=row.eval_max_new_tokens,
            temperature=temperature,
            seed=random.SystemRandom().randrange(2**31) if seed is None else int(seed),
            priority=row.eval_priority,
            requested_by=requested_by,
        )
        if enqueue:
            _enqueue_on_commit(ev.pk)
        job_event_on_commit(ev)
    return ev


def round_evaluation_create(
    *, round_id: int, against: str, requested_by=None, enqueue: bool = True
) -> Evaluation:
    """Evaluate a round's new checkpoint against its parent ("parent") or the base ("base")."""
    r = RLHFRound.objects.select_related("project", "policy_out__parent").filter(pk=round_id).first()
    if r is None:
        raise NotFound("No such round.")
    if r.policy_out is None:
        raise ServiceError(f"Round {r.number} has not written a checkpoint yet.", code=ErrorCode.STATE)
    if against == "parent":
        opponent = r.policy_out.parent
    elif against == "base":
        opponent = policy_root(r.policy_out)
    else:
        raise ServiceError("Evaluate against 'parent' or 'base'.", code=ErrorCode.INVALID)
    if opponent is None or opponent.pk == r.policy_out_id:
        raise ServiceError(
            "This checkpoint has no other checkpoint to be compared with.", code=ErrorCode.STATE
        )
    return evaluation_create(
        project=r.project,
        challenger=r.policy_out,
        opponent=opponent,
        round=r,
        requested_by=requested_by,
        enqueue=enqueue,
    )


def evaluation_cancel(*, evaluation_id: int) -> Evaluation:
    """Cancel a queued evaluation at once; a running one stops at its next chunk. The pairs
    already published stay in the queue."""
    return job_cancel(Evaluation, evaluation_id)
