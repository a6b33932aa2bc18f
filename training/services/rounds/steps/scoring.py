"""Step "scoring": reward, its z (in the reward model's reference units) and the shaped reward
z − λ·p(unsafe) − missing_eos_penalty·[truncated] of every candidate (training.ml.shaping), the
log-probabilities for the KL estimate, and the round's metrics. Fills NULL columns only.
Publishing scores the new policy's candidates with the same `candidates_score`."""

from __future__ import annotations

from core.jobs import JobStatus
from training.ml.round_metrics import CandidateStats, round_metrics
from training.models import RLHFRound, RoundCandidate
from training.services.policies import policy_dir_verified
from training.services.rounds.progress import RoundReporter
from training.services.rounds.steps.batches import batches_run, candidates_pending

POLICY_IN = RoundCandidate.SampledFrom.POLICY_IN


def shaping_settings(r: RLHFRound) -> tuple[float, float]:
    """(λ, missing_eos_penalty) of the round; a round made before they existed gets the defaults.
    With an unsafe budget, λ is the round's dual step (`round_dual_step`)."""
    c = r.config
    eos_penalty = float(c.get("missing_eos_penalty", 1.0))
    if c.get("unsafe_budget") is None:
        return float(c.get("toxicity_lambda", 1.0)), eos_penalty
    return float(round_dual_step(r)["lam"]), eos_penalty


def round_dual_step(r: RLHFRound) -> dict:
    """The round's λ from its unsafe budget (training.ml.safety_budget: Safe RLHF's Lagrangian
    update). It starts from the λ of the project's latest earlier round that took a dual step and
    succeeded (the first such round starts from `toxicity_lambda`), steps by the mean p(unsafe) of
    this round's own candidates, and is computed once: kept in `metrics["lagrangian"]`, so the
    new policy's candidates (publishing) and a resumed round shape with the same λ."""
    from training.ml.safety_budget import dual_step

    if "lagrangian" in r.metrics:
        return r.metrics["lagrangian"]
    c = r.config
    previous = (
        RLHFRound.objects.filter(
            project_id=r.project_id,
            number__lt=r.number,
            status=JobStatus.SUCCEEDED,
            metrics__has_key="lagrangian",
        )
        .order_by("-number")
        .values_list("metrics", flat=True)
        .first()
    )
    start = float(previous["lagrangian"]["lam"]) if previous else float(c.get("toxicity_lambda", 1.0))
    rows = list(
        RoundCandidate.objects.filter(round=r, sampled_from=POLICY_IN, toxicity__isnull=False)
        .order_by("pk")
        .values_list("toxicity", "prompt_id")
    )
    step = dual_step(
        lam=start,
        p_unsafe=[t for t, _ in rows],
        groups=[p for _, p in rows],
        budget=float(c["unsafe_budget"]),
        step=float(c.get("lambda_step", 5.0)),
        seed=r.seed % (2**31),
    )
    r.metrics["lagrangian"] = step.as_dict()
    return r.metrics["lagrangian"]


def candidates_score(r: RLHFRound, rep: RoundReporter, *, step: str, sampled_from: str) -> None:
    from training.ml.shaping import shaped_terms
    from training.services.scoring import reward_score_normalised

    phase = f"reward ({RoundCandidate.SampledFrom(sampled_from).label})"
    todo, total = candidates_pending(
        r, rep, step=step, sampled_from=sampled_from, column="reward", phase=phase
    )
    lam, eos_penalty = shaping_settings(r)

    def work(batch: list[RoundCandidate]) -> None:
        rewards, norm = reward_score_normalised(
            project=r.project_id,
            prompts=[c.prompt.messages for c in batch],
            responses=[c.response.text for c in batch],
        )
        r.metrics["reward_normalisation"] = norm.as_dict()
        for c, value in zip(batch, rewards, strict=True):
            terms = shaped_terms(
                score=value,
                p_unsafe=c.toxicity,
                truncated=c.finish_reason == "length",
                norm=norm,
                lam=lam,
                missing_eos_penalty=eos_penalty,
            )
            c.reward, c.reward_z, c.shaped_reward = float(value), terms.reward_z, terms.shaped
        RoundCandidate.objects.bulk_update(batch, ["reward", "reward_z", "shaped_reward"])

    batches_run(rep, todo, total, step=step, phase=phase, work=work)


def _reference_logprobs(r: RLHFRound, rep: RoundReporter) -> None:
    """log p(response) under the reference for the KL estimate. When the round samples from the
    reference itself the estimate is 0 and nothing is computed. Otherwise both sides are scored
    on the stored text (the policy's value recorded during generation saw the raw tokens, not
    the stripped text, so mixing the two would bias the estimate)."""
    todo = list(
        RoundCandidate.objects.filter(round=r, sampled_from=POLICY_IN, ref_logprob_sum__isnull=True)
        .select_related("response", "prompt")
        .order_by("pk")
    )
    if not todo:
        return
    if r.policy_in.sha256 == r.reference.sha256 or all(c.logprob_sum is None for c in todo):
        for c in todo:
            c.ref_logprob_sum = c.logprob_sum
        RoundCandidate.objects.bulk_update(todo, ["ref_logprob_sum"])
        return
    from training.ml.generation import sequence_logprobs
    from training.ml.policy import load_policy

    rep.progress("scoring", 0, len(todo), phase="KL to the reference", force=True)
    prompts = [c.prompt.messages for c in todo]
    texts = [c.response.text for c in todo]
    eos = [c.finish_reason == "stop" for c in todo]
    rep.check()
    model, tok = load_policy(policy_dir_verified(r.policy_in))
    mine = sequence_logprobs(model, tok, prompts, texts, add_eos=eos)
    del model
    rep.check()
    model, tok = load_policy(policy_dir_verified(r.reference))
    ref = sequence_logprobs(model, tok, prompts, texts, add_eos=eos)
    del model
    for c, a, b in zip(todo, mine, ref, strict=True):
        c.logprob_sum, c.ref_logprob_sum = float(a), float(b)
    RoundCandidate.objects.bulk_update(todo, ["logprob_sum", "ref_logprob_sum"])
    rep.progress("scoring", len(todo), len(todo), phase="KL to the reference", force=True)


def candidate_stats(r: RLHFRound, sampled_from: str) -> list[CandidateStats]:
    """The round's candidates sampled from one policy as plain records for
    `training.ml.round_metrics`."""
    rows = RoundCandidate.objects.filter(round=r, sampled_from=sampled_from).values_list(
        "reward", "shaped_reward", "toxicity", "blocked", "num_tokens", "logprob_sum", "ref_logprob_sum",
        "reward_z", "finish_reason", "response__text",
    )  # fmt: skip
    return [
        CandidateStats(*row[:-3], reward_z=row[-3], truncated=row[-2] == "length", text_chars=len(row[-1]))
        for row in rows
    ]


def step_scoring(r: RLHFRound, rep: RoundReporter) -> None:
    candidates_score(r, rep, step="scoring", sampled_from=POLICY_IN)
    _reference_logprobs(r, rep)
    stats = candidate_stats(r, POLICY_IN)
    lam, eos_penalty = shaping_settings(r)
    r.metrics.update(round_metrics(stats, lam=lam, missing_eos_penalty=eos_penalty))
    scored = sum(1 for c in stats if c.reward is not None)  # the step ends showing what it scored
    rep.progress("scoring", scored, len(stats), phase="scored", force=True)
