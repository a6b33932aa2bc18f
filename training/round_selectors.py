"""Reads for rounds: lists, one round's lineage and pairs, new preferences, human win-rate."""

from __future__ import annotations

from django.db.models import Count, Max, QuerySet

from annotation.models import Preference, Project, Prompt
from core.jobs import UNFINISHED
from training.models import PolicyCheckpoint, RewardModel, RLHFRound, RoundCandidate, RoundPair, RoundSettings


def rounds_for(*, project: Project) -> QuerySet[RLHFRound]:
    return (
        RLHFRound.objects.filter(project=project)
        .select_related("policy_in", "policy_out", "reward_model", "requested_by")
        .order_by("-number")
    )


def round_active(*, project_id: int) -> RLHFRound | None:
    return RLHFRound.objects.filter(project_id=project_id, status__in=UNFINISHED).first()


TRAINED_STATUSES = ("succeeded", "queued", "running")


def newest_trained_cutoff(*, project_id: int) -> int:
    """The snapshot cutoff of the newest reward-model run trained or training (succeeded,
    promoted or not, or queued / running); 0 when there is none."""
    cutoffs = RewardModel.objects.filter(project_id=project_id, status__in=TRAINED_STATUSES)
    return cutoffs.aggregate(m=Max("snapshot_cutoff_id"))["m"] or 0


def new_preferences_count(*, project: Project | int) -> int:
    """A/B votes newer than the newest snapshot a reward model was trained on (or is being
    trained on), whether or not the promotion gate promoted it; all of them when there is none.

    Counting against the active model's snapshot instead started rounds forever once a
    retrained model was not promoted (issue 13)."""
    project_id = project if isinstance(project, int) else project.pk
    cutoff = newest_trained_cutoff(project_id=project_id)
    return (
        Preference.objects.filter(comparison__project_id=project_id, choice__in=("a", "b"), pk__gt=cutoff)
        .exclude(comparison__prompt__purpose=Prompt.Purpose.EVAL)
        .count()
    )


def reward_run_same_snapshot(*, project: Project, sha256: str) -> RewardModel | None:
    """The newest succeeded reward-model run of the project trained on exactly this snapshot."""
    return (
        RewardModel.objects.filter(project=project, status="succeeded", snapshot_sha256=sha256)
        .order_by("-version")
        .first()
    )


def round_win_rate(*, round: RLHFRound) -> dict:
    """Human votes on this round's new-vs-old pairs: wins of the new policy, ties count half.

    Candidate A of a new_vs_old pair is always the new policy's; "both bad" counts as a tie.
    """
    pairs = RoundPair.objects.filter(round=round, strategy=RoundSettings.Strategy.NEW_VS_OLD)
    comparison_ids = list(pairs.values_list("comparison_id", flat=True))
    counts = dict(
        Preference.objects.filter(comparison_id__in=comparison_ids)
        .values_list("choice")
        .annotate(n=Count("pk"))
        .values_list("choice", "n")
    )
    wins, losses = counts.get("a", 0), counts.get("b", 0)
    ties = counts.get("tie", 0) + counts.get("both_bad", 0)
    votes = wins + losses + ties
    return {
        "pairs": len(comparison_ids),
        "votes": votes,
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "win_rate": (wins + 0.5 * ties) / votes if votes else None,
    }


def round_lineage(*, round: RLHFRound) -> list[dict]:
    """policy parent → candidates → ratings → reward model → new policy, as rows for the page."""
    candidates = RoundCandidate.objects.filter(round=round)
    old = candidates.filter(sampled_from=RoundCandidate.SampledFrom.POLICY_IN)
    pairs = RoundPair.objects.filter(round=round)
    votes = Preference.objects.filter(comparison_id__in=pairs.values("comparison_id")).count()
    return [
        {"what": "Policy sampled", "value": round.policy_in.label if round.policy_in else "—"},
        {"what": "DPO reference", "value": round.reference.label if round.reference else "—"},
        {
            "what": "Candidates",
            "value": f"{old.count()} from {len(round.prompt_ids)} prompts "
            f"({old.filter(blocked=True).count()} blocked)",
        },
        {
            "what": "Reward model",
            "value": f"v{round.reward_model.version} ({round.reward_model.safety_source or 'lexical'} safety)"
            if round.reward_model
            else "—",
        },
        {
            "what": "Reward model retrained by this round",
            "value": f"v{round.reward_run.version} ({round.reward_run.status})" if round.reward_run else "no",
        },
        {"what": "New policy", "value": round.policy_out.label if round.policy_out else "—"},
        {"what": "Pairs published / human votes", "value": f"{pairs.count()} / {votes}"},
    ]


def round_pairs(*, round: RLHFRound) -> QuerySet[RoundPair]:
    return RoundPair.objects.filter(round=round).select_related(
        "comparison", "candidate_a__response", "candidate_b__response", "prompt"
    )


def round_candidates(*, round: RLHFRound, limit: int = 200) -> QuerySet[RoundCandidate]:
    return (
        RoundCandidate.objects.filter(round=round)
        .select_related("response")
        .order_by("prompt_id", "sampled_from", "candidate_index")[:limit]
    )


def policy_checkpoints_for(*, project: Project) -> QuerySet[PolicyCheckpoint]:
    return PolicyCheckpoint.objects.filter(project=project).select_related("parent", "round", "reward_model")
