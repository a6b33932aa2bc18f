"""Step "generating": sample the round's prompts once from its seed (stored), then write
`candidates_per_prompt` candidates per prompt from the round's input policy, prompt batch by
prompt batch, keyed by unique (round, prompt, sampled_from, candidate_index): a restart
generates only prompts that have none. Publishing samples the updated policy's candidates
(sampled_from "policy_out") with the same `candidates_generate`."""

from __future__ import annotations

import random
from dataclasses import replace

from django.conf import settings
from django.db import transaction

from annotation.models import Prompt, Response
from training.models import PolicyCheckpoint, RLHFRound, RoundCandidate
from training.services.rounds.backends import generation_backend, generation_chunks, prompts_per_chunk
from training.services.rounds.progress import RoundReporter, RoundStepError


def _sample_prompts(r: RLHFRound) -> list[int]:
    """Deterministic from the round's seed: the same pool and seed give the same prompts. Only
    the round prompt pool (purpose "round"): held-out evaluation prompts and the prompts of
    imported comparisons are never sampled."""
    pool = list(
        Prompt.objects.filter(project_id=r.project_id, purpose=Prompt.Purpose.ROUND)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not pool:
        raise RoundStepError("The project's round prompt pool is empty: import round prompts first.")
    k = min(int(r.config.get("prompts_per_round", 16)), len(pool))
    return random.Random(r.seed).sample(pool, k)


def _params(r: RLHFRound):
    from training.ml.policy import GenerationParams

    c = r.config
    return GenerationParams(
        n=int(c.get("candidates_per_prompt", 4)),
        temperature=float(c.get("temperature", 0.8)),
        top_p=float(c.get("top_p", 0.95)),
        max_new_tokens=int(c.get("max_new_tokens", 64)),
    )


def _clean_text(text: str) -> str:
    # PostgreSQL text cannot hold NUL; model output may contain it.
    return text.replace("\x00", "\ufffd")


def candidates_generate(
    r: RLHFRound,
    rep: RoundReporter,
    *,
    step: str,
    sampled_from: str,
    policy: PolicyCheckpoint,
    prompt_ids: list[int],
) -> None:
    params = _params(r)
    phase = f"generate ({RoundCandidate.SampledFrom(sampled_from).label})"
    have = set(
        RoundCandidate.objects.filter(
            round=r, sampled_from=sampled_from, prompt_id__in=prompt_ids
        ).values_list("prompt_id", flat=True)
    )
    pending = [pid for pid in prompt_ids if pid not in have]
    total, done = len(prompt_ids), len(prompt_ids) - len(pending)
    rep.progress(step, done, total, phase=phase, force=True)
    if not pending:
        return
    backend, backend_name = generation_backend(policy)
    messages = dict(Prompt.objects.filter(pk__in=pending).values_list("pk", "messages"))
    model_name = settings.GENERATION_MODEL if backend_name == "openai" else f"policy #{policy.pk}"
    chunks = generation_chunks(
        r, pending, messages, per_chunk=prompts_per_chunk(backend_name, params.n), sampled_from=sampled_from
    )
    try:
        for chunk, seed in chunks:
            rep.check()
            groups = backend.generate([messages[pid] for pid in chunk], replace(params, seed=seed))
            _candidates_write(r, policy, sampled_from, chunk, groups, backend_name, model_name)
            done += len(chunk)
            rep.progress(step, done, total, phase=phase)
    finally:
        if backend_name == "openai":
            backend.close()


def _candidates_write(r, policy, sampled_from, chunk, groups, backend_name, model_name) -> None:
    """One generate batch's Responses and RoundCandidates, together or not at all."""
    with transaction.atomic():
        responses, rows = [], []
        for pid, group in zip(chunk, groups, strict=True):
            for index, c in enumerate(group):
                responses.append(
                    Response(
                        prompt_id=pid,
                        text=_clean_text(c.text),
                        source=Response.Source.POLICY,
                        model_name=model_name,
                        policy_checkpoint_id=policy.pk,
                        generation_params={**c.params, "backend": backend_name},
                        metadata={"round_id": r.pk, "sampled_from": sampled_from, "candidate_index": index},
                    )
                )
                rows.append(
                    RoundCandidate(
                        round=r,
                        prompt_id=pid,
                        sampled_from=sampled_from,
                        candidate_index=index,
                        policy=policy,
                        num_tokens=c.num_tokens,
                        finish_reason=c.finish_reason,
                        logprob_sum=c.logprob_sum,
                    )
                )
        Response.objects.bulk_create(responses)
        for row, response in zip(rows, responses, strict=True):
            row.response = response
        RoundCandidate.objects.bulk_create(rows)


def step_generating(r: RLHFRound, rep: RoundReporter) -> None:
    if not r.prompt_ids:
        r.prompt_ids = _sample_prompts(r)
        RLHFRound.objects.filter(pk=r.pk).update(prompt_ids=r.prompt_ids)
    candidates_generate(
        r,
        rep,
        step="generating",
        sampled_from=RoundCandidate.SampledFrom.POLICY_IN,
        policy=r.policy_in,
        prompt_ids=r.prompt_ids,
    )
