"""Reads of evaluation votes: win rates between two checkpoints, the leaderboard (table and
forest plot per voter kind), a round's evaluation and the evaluation numbers across rounds.

An evaluation vote is a preference on a comparison that an `EvaluationPair` links to the two
checkpoints that wrote its responses. Ties and "both bad" count as half a win for each side.
`voters` picks whose votes count: None (everyone), "human" (raters' votes), or a judge's id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Q

from annotation.models import Preference
from core.errors import ErrorCode, NotFound, ServiceError
from training.judge_selectors import judge_voter_ids
from training.ml.leaderboard import ELO_ANCHOR, LeaderboardFit, PairVote, bradley_terry
from training.ml.stats import Estimate, win_rate_interval
from training.models import Evaluation, EvaluationPair, Judge, PolicyCheckpoint, RLHFRound
from training.selectors import loss_curve_points

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


def win_rate_of(votes: list[EvalVote], challenger_id: int, opponent_id: int) -> Estimate:
    """The challenger's win rate against the opponent over the `votes` between those two, with
    a 95 % interval from a bootstrap over prompts (samples of one prompt are not independent)."""
    mine = [v for v in votes if {v.checkpoint_a, v.checkpoint_b} == {challenger_id, opponent_id}]
    return win_rate_interval([v.outcome_for(challenger_id) for v in mine], [v.prompt_id for v in mine])


def evaluation_win_rate(*, challenger_id: int, opponent_id: int, project_id: int, voters=None) -> Estimate:
    """The challenger's win rate against the opponent on their evaluation pairs (`win_rate_of`)."""
    votes = evaluation_votes(project_id=project_id, voters=voters, checkpoints=(challenger_id, opponent_id))
    return win_rate_of(votes, challenger_id, opponent_id)


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


# --- voter kinds ---------------------------------------------------------------------------


def voters_parse(value: str | None) -> str | int:
    """A `voters` query value: "all" (also when empty), "human", or a judge's id."""
    value = (value or "all").strip()
    if value in ("all", "human"):
        return value
    if not value.isdigit():
        raise ServiceError("voters must be 'all', 'human' or a judge's id.", code=ErrorCode.INVALID)
    if not Judge.objects.filter(pk=int(value)).exists():
        raise NotFound(f"No judge {value}.")
    return int(value)


def voter_kinds(*, project_id: int) -> list[dict]:
    """[{"key", "label", "user_id"}]: all voters, humans, and each judge that voted on the
    project's evaluation pairs."""
    comparisons = EvaluationPair.objects.filter(evaluation__project_id=project_id).values("comparison_id")
    voted = Preference.objects.filter(comparison_id__in=comparisons).values("rater_id")
    kinds = [
        {"key": "all", "label": "All voters", "user_id": None},
        {"key": "human", "label": "Humans", "user_id": None},
    ]
    for judge in Judge.objects.filter(user_id__in=voted).order_by("name"):
        kinds.append({"key": str(judge.pk), "label": f"Judge {judge.name}", "user_id": judge.user_id})
    return kinds


def _votes_of_kind(votes: list[EvalVote], kind: dict) -> list[EvalVote]:
    if kind["key"] == "all":
        return votes
    if kind["key"] == "human":
        return [v for v in votes if v.source == Preference.Source.RATER]
    return [v for v in votes if v.rater_id == kind["user_id"]]


# --- the leaderboard page ------------------------------------------------------------------


def leaderboard_table(*, project_id: int, voters: str | int = "all", resamples: int = 200) -> dict:
    """The leaderboard of one voter kind as rows (best first) with the forest plot's geometry."""
    fit = leaderboard(project_id=project_id, voters=voters, resamples=resamples)
    if fit is None:
        return {"voters": str(voters), "votes": 0, "rows": [], "plot": None}
    checkpoints = PolicyCheckpoint.objects.select_related("round").in_bulk([r.player for r in fit.ratings])
    rows = []
    for r in fit.ratings:
        c = checkpoints[r.player]
        rows.append(
            {
                "checkpoint": c.pk,
                "label": f"#{c.pk} {c.kind}",
                "kind": c.kind,
                "round": c.round.number if c.round else None,
                "round_id": c.round_id,
                "is_base": c.pk == fit.base,
                "is_current": c.is_current,
                "elo": r.elo,
                "elo_low": r.elo_low,
                "elo_high": r.elo_high,
                "win_vs_base": r.win_vs_base,
                "win_vs_base_low": r.win_vs_base_low,
                "win_vs_base_high": r.win_vs_base_high,
                "votes": r.votes,
            }
        )
    return {
        "voters": str(voters),
        "votes": fit.votes,
        "resamples": fit.resamples,
        "position_advantage": fit.position_advantage,
        "connected": fit.connected,
        "base": fit.base,
        "rows": rows,
        "plot": forest_plot(rows),
    }


def _nice_step(span: float) -> float:
    raw = span / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def forest_plot(rows: list[dict], *, width: int = 520, row_height: int = 24, label_width: int = 120) -> dict:
    """SVG geometry of a forest plot: one row per checkpoint, a point at its Elo and a line over
    its 95 % interval, a vertical line at the base's 1000. Computed once here; the template
    only draws it."""
    lows = [r["elo_low"] for r in rows if math.isfinite(r["elo_low"])] + [ELO_ANCHOR]
    highs = [r["elo_high"] for r in rows if math.isfinite(r["elo_high"])] + [ELO_ANCHOR]
    lo, hi = min(lows), max(highs)
    margin = max(10.0, (hi - lo) * 0.05)
    lo, hi = lo - margin, hi + margin
    left, right, top = label_width, width - 10, 10
    scale = (right - left) / (hi - lo)

    def x(value: float) -> float:
        return round(left + (min(max(value, lo), hi) - lo) * scale, 1)

    step = _nice_step(hi - lo)
    ticks = [t * step for t in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
    height = top + row_height * len(rows) + 24
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "axis_y": height - 20,
        "anchor_x": x(ELO_ANCHOR),
        "ticks": [{"x": x(t), "label": f"{t:.0f}"} for t in ticks],
        "rows": [
            {
                "label": row["label"] + (f" · round {row['round']}" if row["round"] else ""),
                "y": top + row_height * i + row_height // 2,
                "x": x(row["elo"]),
                "x_low": x(row["elo_low"]),
                "x_high": x(row["elo_high"]),
                "is_base": row["is_base"],
            }
            for i, row in enumerate(rows)
        ],
    }


# --- a round's evaluation ------------------------------------------------------------------


def _latest_metrics(challenger_ids) -> dict[int, Evaluation]:
    """The newest finished evaluation of each challenger (its metrics describe the challenger)."""
    out: dict[int, Evaluation] = {}
    for ev in Evaluation.objects.filter(challenger_id__in=list(challenger_ids), status="succeeded").order_by(
        "pk"
    ):
        out[ev.challenger_id] = ev
    return out


def round_evaluation(*, round: RLHFRound) -> dict | None:
    """The round's new checkpoint against its parent and the base, per voter kind (win rate
    with interval and n), and what its newest evaluation measured (KL, truncated, unsafe,
    proxy reward); None before the round wrote a checkpoint."""
    challenger = round.policy_out
    if challenger is None:
        return None
    parent, base = challenger.parent_id, base_checkpoint_id(round.project_id)
    opponents = {pk for pk in (parent, base) if pk is not None and pk != challenger.pk}
    votes = evaluation_votes(project_id=round.project_id, checkpoints=(challenger.pk, *opponents))
    by_kind = []
    for kind in voter_kinds(project_id=round.project_id):
        mine = _votes_of_kind(votes, kind)
        if kind["key"] != "all" and not mine:
            continue
        by_kind.append(
            {
                "key": kind["key"],
                "label": kind["label"],
                "vs_parent": win_rate_of(mine, challenger.pk, parent).as_dict() if parent else None,
                "vs_base": win_rate_of(mine, challenger.pk, base).as_dict()
                if base and base != parent
                else None,
            }
        )
    latest = _latest_metrics([challenger.pk]).get(challenger.pk)
    return {
        "challenger": challenger,
        "parent_id": parent,
        "base_id": base,
        "by_kind": by_kind,
        "metrics": latest.metrics if latest else {},
        "measured_by": latest,
        "evaluations": list(
            Evaluation.objects.filter(challenger=challenger).select_related("opponent").order_by("-pk")[:5]
        ),
    }


SERIES = (
    ("win_vs_parent", "Win rate vs parent (all voters)"),
    ("proxy_reward", "Proxy reward (active reward model)"),
    ("kl", "KL to the reference (nats)"),
    ("truncated", "Truncated fraction"),
    ("unsafe", "Unsafe fraction"),
)


def rounds_evaluation_series(*, project_id: int, rounds) -> list[dict]:
    """The five evaluation numbers over the round number, one small server-drawn chart each:
    [{"key", "label", "points" (SVG polyline), "values": [(round, value)], "last"}]."""
    rounds = [r for r in rounds if r.policy_out_id]
    votes = evaluation_votes(project_id=project_id)
    latest = _latest_metrics(r.policy_out_id for r in rounds)
    parents = dict(
        PolicyCheckpoint.objects.filter(pk__in=[r.policy_out_id for r in rounds]).values_list(
            "pk", "parent_id"
        )
    )
    values: dict[str, list] = {key: [] for key, _ in SERIES}
    for r in sorted(rounds, key=lambda r: r.number):
        parent = parents.get(r.policy_out_id)
        win = win_rate_of(votes, r.policy_out_id, parent) if parent else None
        if win is not None and win.n:
            values["win_vs_parent"].append((r.number, win.value))
        metrics = latest[r.policy_out_id].metrics if r.policy_out_id in latest else {}
        for key in ("proxy_reward", "kl", "truncated", "unsafe"):
            if (metrics.get(key) or {}).get("value") is not None:
                values[key].append((r.number, metrics[key]["value"]))
    return [
        {
            "key": key,
            "label": label,
            "values": values[key],
            "points": loss_curve_points([list(p) for p in values[key]], width=220, height=60),
            "last": values[key][-1][1] if values[key] else None,
        }
        for key, label in SERIES
    ]
