"""Reads for the policy gate, rollback and the over-optimisation guard: whose evaluation votes a
project's gate counts, a round's proxy reward and KL, the round history the guard reads, and
the project's policy events."""

from __future__ import annotations

from django.db.models import Avg, Q, QuerySet

from annotation.models import Project
from core.jobs import JobStatus
from training.evaluation_selectors import evaluation_win_rate
from training.ml.gates import RoundPoint
from training.ml.stats import Estimate
from training.models import Evaluation, PolicyEvent, RLHFRound, RoundCandidate, RoundPair, RoundSettings

MISSING_JUDGE = (
    "No evaluation judge is set: choose one in the round settings (eval judge), or use the human-votes rule."
)


def gate_voters(row: RoundSettings) -> tuple[str | int | None, str]:
    """(voters, problem): whose evaluation votes the project's policy gate counts, for
    `evaluation_win_rate`; problem is why the gate cannot count any ("" when it can)."""
    if row.policy_gate == RoundSettings.PolicyGate.JUDGE_LOWER_BOUND:
        if row.eval_judge_id is None:
            return None, MISSING_JUDGE
        return row.eval_judge_id, ""
    if row.policy_gate == RoundSettings.PolicyGate.HUMAN_VOTES:
        return "human", ""
    return None, ""


def round_win_rate_vs_parent(*, round: RLHFRound, voters) -> Estimate | None:
    """The round's new checkpoint against the checkpoint it was trained from, on evaluation pairs."""
    out = round.policy_out
    if out is None or out.parent_id is None:
        return None
    return evaluation_win_rate(
        challenger_id=out.pk, opponent_id=out.parent_id, project_id=round.project_id, voters=voters
    )


def round_evaluation(*, round: RLHFRound) -> Evaluation | None:
    """The evaluation of the round's new checkpoint against its parent (the newest one)."""
    if round.policy_out_id is None:
        return None
    return Evaluation.objects.filter(round=round, challenger_id=round.policy_out_id).order_by("-pk").first()


def round_proxy_reward(*, round: RLHFRound) -> float | None:
    """The mean reward, under the round's reward model, of the new policy's candidates (those
    sampled while publishing); with none (an HTTP backend), of the published pairs' candidates."""
    new = RoundCandidate.objects.filter(
        round=round, sampled_from=RoundCandidate.SampledFrom.POLICY_OUT, blocked=False, reward__isnull=False
    )
    value = new.aggregate(m=Avg("reward"))["m"]
    if value is None:
        pairs = RoundPair.objects.filter(round=round)
        published = RoundCandidate.objects.filter(
            Q(pk__in=pairs.values("candidate_a_id")) | Q(pk__in=pairs.values("candidate_b_id")),
            reward__isnull=False,
        )
        value = published.aggregate(m=Avg("reward"))["m"]
    return value


def round_kl(*, round: RLHFRound) -> float | None:
    """KL of the new checkpoint to the reference: its evaluation's measurement when there is one,
    else the round's own estimate (measured on the input policy's samples)."""
    evaluation = round_evaluation(round=round)
    metrics = evaluation.metrics if evaluation is not None else {}
    for key in ("kl_to_reference", "kl"):
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    value = (round.metrics or {}).get("kl_to_reference")
    return float(value) if isinstance(value, int | float) else None


def round_history(
    *, project_id: int, voters, last: int = 2, ending: int | None = None
) -> tuple[list[RLHFRound], list[RoundPoint]]:
    """The project's `last` finished rounds that wrote a checkpoint (with round `ending`, one
    whose job is ending now), oldest first, and what the over-optimisation guard reads of each
    (`training.ml.gates.RoundPoint`)."""
    rounds = list(
        RLHFRound.objects.filter(Q(status=JobStatus.SUCCEEDED) | Q(pk=ending or 0))
        .filter(project_id=project_id, policy_out__isnull=False)
        .select_related("policy_out")
        .order_by("-number")[:last]
    )[::-1]
    points = []
    for r in rounds:
        estimate = round_win_rate_vs_parent(round=r, voters=voters)
        points.append(
            RoundPoint(
                proxy_reward=round_proxy_reward(round=r),
                win_rate=estimate if estimate is not None and estimate.n > 0 else None,
                kl=round_kl(round=r),
            )
        )
    return rounds, points


def policy_events_for(*, project: Project, limit: int = 50) -> QuerySet[PolicyEvent]:
    return PolicyEvent.objects.filter(project=project).select_related(
        "checkpoint", "previous", "round", "by"
    )[:limit]
