"""Reads of evaluation votes: win rates between two checkpoints and the leaderboard.

An evaluation vote is a preference on a comparison that an `EvaluationPair` links to the two
checkpoints that wrote its responses. Ties and "both bad" count as half a win for each side.
`voters` picks whose votes count: None (everyone), "human" (raters' votes), or a judge's id.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from annotation.models import Preference
from training.judge_selectors import judge_voter_ids
from training.ml.leaderboard import LeaderboardFit, PairVote, bradley_terry
from training.ml.stats import Estimate, win_rate_interval
from training.models import EvaluationPair, Judge, PolicyCheckpoint

HALF = {"tie", "both_bad"}


@dataclass(frozen=True)
class EvalVote:
    prompt_id: int
    checkpoint_a: int
    checkpoint_b: int
    choice: str  # a | b | tie | both_bad
    shown_left: str  # a | b
    source: str
    rater_id: int

    @property
    def left(self) -> int:
        return self.checkpoint_a if self.shown_left == "a" else self.checkpoint_b

    @property
    def right(self) -> int:
        return self.checkpoint_b if self.shown_left == "a" else self.checkpoint_a

    def outcome_for(self, checkpoint: int) -> float:
        """1 when `checkpoint` won this vote, 0.5 for a tie or both bad, 0 when it lost."""
        if self.choice in HALF:
            return 0.5
        winner = self.checkpoint_a if self.choice == "a" else self.checkpoint_b
        return 1.0 if winner == checkpoint else 0.0


def _voters_filter(voters: str | int | None) -> Q:
    if voters is None or voters == "all":
        return Q()
    if voters == "human":
        return Q(source=Preference.Source.RATER)
    judge = Judge.objects.filter(pk=int(voters)).first()
    return Q(rater_id__in=judge_voter_ids(judge=judge)) if judge is not None else Q(pk__in=[])


def evaluation_votes(*, project_id: int, voters: str | int | None = None, checkpoints=None) -> list[EvalVote]:
    """Every evaluation vote of the project (optionally only between `checkpoints`)."""
    pairs = EvaluationPair.objects.filter(evaluation__project_id=project_id)
    if checkpoints is not None:
        ids = list(checkpoints)
        pairs = pairs.filter(checkpoint_a_id__in=ids, checkpoint_b_id__in=ids)
    by_comparison = {
        row[0]: row[1:]
        for row in pairs.values_list("comparison_id", "prompt_id", "checkpoint_a_id", "checkpoint_b_id")
    }
    if not by_comparison:
        return []
    rows = (
        Preference.objects.filter(comparison_id__in=list(by_comparison))
        .filter(_voters_filter(voters))
        .order_by("pk")
        .values_list("comparison_id", "choice", "shown_left", "source", "rater_id")
    )
    out = []
    for comparison_id, choice, shown_left, source, rater_id in rows:
        prompt_id, a, b = by_comparison[comparison_id]
        out.append(EvalVote(prompt_id, a, b, choice, shown_left or "a", source, rater_id))
    return out


def evaluation_win_rate(*, challenger_id: int, opponent_id: int, project_id: int, voters=None) -> Estimate:
    """The challenger's win rate against the opponent on their evaluation pairs, with a 95 %
    interval from a bootstrap over prompts (samples of one prompt are not independent)."""
    votes = [
        v
        for v in evaluation_votes(
            project_id=project_id, voters=voters, checkpoints=(challenger_id, opponent_id)
        )
        if {v.checkpoint_a, v.checkpoint_b} == {challenger_id, opponent_id}
    ]
    return win_rate_interval([v.outcome_for(challenger_id) for v in votes], [v.prompt_id for v in votes])


def base_checkpoint_id(project_id: int) -> int | None:
    return (
        PolicyCheckpoint.objects.filter(project_id=project_id, kind=PolicyCheckpoint.Kind.BASE)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )


def leaderboard(
    *, project_id: int, voters=None, resamples: int = 200, seed: int = 0
) -> LeaderboardFit | None:
    """Bradley–Terry ratings of every checkpoint with evaluation votes, anchored at the base."""
    base = base_checkpoint_id(project_id)
    votes = evaluation_votes(project_id=project_id, voters=voters)
    if base is None or not votes:
        return None
    pair_votes = [PairVote(left=v.left, right=v.right, outcome=v.outcome_for(v.left)) for v in votes]
    return bradley_terry(pair_votes, base=base, resamples=resamples, seed=seed)
