"""Reads for the training pages, the API and the training job."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.db.models import Max, QuerySet

from annotation.models import Preference, Project, Prompt
from training.models import RewardModel

# Choices a reward run can train on; which of them a run uses depends on its config
# (ties and both-bad votes may be dropped; strict a/b votes are always used).
STRICT_CHOICES = ("a", "b")


@dataclass(frozen=True)
class Snapshot:
    """The preferences one reward run trains on.

    Each vote is its own pair: a comparison rated by three raters gives three pairs (the
    Bradley–Terry loss then weights the comparison by its votes, and disagreeing votes pull the
    two scores together, which is what they mean). The pairs share a prompt, so the
    prompt-disjoint split keeps them on the same side.
    """

    cutoff_id: int
    choices: tuple[str, ...]
    preference_ids: list[int]
    counts: dict
    sha256: str
    rows: list[dict] = field(default_factory=list, repr=False)


def snapshot_choices(*, include_ties: bool, include_both_bad: bool) -> tuple[str, ...]:
    return STRICT_CHOICES + (("tie",) if include_ties else ()) + (("both_bad",) if include_both_bad else ())


def _snapshot_queryset(
    *, project: Project, cutoff_id: int, choices: tuple[str, ...], exclude_raters=(), gold: str = "exclude"
) -> QuerySet:
    """Votes a reward model may train on: never those on held-out evaluation prompts, nor
    people's votes of the raters a trust filter left out, nor (unless `gold` is "include") votes
    on gold pairs, which measure raters and are not data (as in exports)."""
    qs = (
        Preference.objects.filter(comparison__project=project, pk__lte=cutoff_id, choice__in=choices)
        .exclude(comparison__prompt__purpose=Prompt.Purpose.EVAL)
        .order_by("pk")
    )
    if gold != "include":
        qs = qs.filter(comparison__gold_choice="")
    if exclude_raters:
        qs = qs.exclude(rater_id__in=list(exclude_raters), source=Preference.Source.RATER)
    return qs


def untrusted_raters(*, project_id: int, min_trust: float) -> list[int]:
    """Raters of the project whose trust (annotation.quality) is under `min_trust`."""
    from annotation.models import RaterState

    return sorted(
        RaterState.objects.filter(project_id=project_id, trust__lt=min_trust).values_list(
            "rater_id", flat=True
        )
    )


def rater_trusts(*, project_id: int) -> dict[str, float]:
    """{rater id (str): trust} of the project's raters (annotation.quality), 4 decimals: the
    weights a reward run that weights votes by trust is queued with."""
    from annotation.models import RaterState

    return {
        str(rater): round(float(trust), 4)
        for rater, trust in RaterState.objects.filter(project_id=project_id).values_list("rater_id", "trust")
    }


def vote_weight(source: str, rater_id: int | None, rater_weights: dict | None) -> float:
    """A vote's weight in a reward run: its rater's trust for people's votes (1 for a rater with
    no quality row yet, as the exports' min_trust treats them); judges' and imported votes 1."""
    if not rater_weights or source != Preference.Source.RATER:
        return 1.0
    return float(rater_weights.get(str(rater_id), 1.0))


def snapshot_hash(triples) -> str:
    """sha256 over "id,choice,strength" lines in id order (strength "" when null); a weighted
    snapshot's items are (id, choice, strength, weight) and its lines end with ",weight" (4
    decimals), so the hash pins the weights too."""
    digest = hashlib.sha256()
    for pk, choice, strength, *weight in triples:
        line = f"{pk},{choice},{'' if strength is None else strength}"
        if weight:
            line += f",{weight[0]:.4f}"
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()


def preference_cutoff(*, project: Project) -> int:
    return Preference.objects.filter(comparison__project=project).aggregate(m=Max("pk"))["m"] or 0


def preference_snapshot(
    *,
    project: Project,
    cutoff_id: int,
    choices: tuple[str, ...],
    with_rows: bool = False,
    exclude_raters=(),
    rater_weights: dict | None = None,
    gold: str = "exclude",
) -> Snapshot:
    """Ids, counts and hash of the snapshot; with `with_rows`, the texts the trainer needs too.
    `exclude_raters`: people whose votes a trust filter leaves out (counted as `excluded_raters`).
    `rater_weights` ({rater id (str): trust}, fixed when the run was queued): every vote gets a
    weight (`vote_weight`; rows carry it as "weight"), the hash covers the weights and the counts
    say `weighting: "trust"` with the weights' sum and how many votes weigh under 1.
    `gold`: "exclude" (the default) leaves votes on gold pairs out (counted as
    `gold_votes_left_out` when there are any), "include" keeps them (counts say `gold: include`)."""
    qs = _snapshot_queryset(
        project=project, cutoff_id=cutoff_id, choices=choices, exclude_raters=exclude_raters, gold=gold
    )
    weighted = rater_weights is not None
    if with_rows:
        rows = list(
            qs.values(
                "pk",
                "choice",
                "strength",
                "unsafe_a",
                "unsafe_b",
                "source",
                "rater_id",
                "comparison_id",
                "comparison__prompt_id",
                "comparison__prompt__messages",
                "comparison__response_a_id",
                "comparison__response_a__text",
                "comparison__response_b_id",
                "comparison__response_b__text",
            )
        )
        if weighted:
            for r in rows:
                r["weight"] = vote_weight(r["source"], r["rater_id"], rater_weights)
        triples = [(r["pk"], r["choice"], r["strength"], *((r["weight"],) if weighted else ())) for r in rows]
    else:
        rows = []
        if weighted:
            triples = [
                (pk, choice, strength, vote_weight(source, rater, rater_weights))
                for pk, choice, strength, source, rater in qs.values_list(
                    "pk", "choice", "strength", "source", "rater_id"
                )
            ]
        else:
            triples = list(qs.values_list("pk", "choice", "strength"))
    counts: dict = {c: 0 for c in choices}
    for item in triples:
        counts[item[1]] += 1
    counts["total"] = len(triples)
    if exclude_raters:
        counts["excluded_raters"] = len(exclude_raters)
    if gold == "include":
        counts["gold"] = "include"
    else:
        left_out = _snapshot_queryset(
            project=project,
            cutoff_id=cutoff_id,
            choices=choices,
            exclude_raters=exclude_raters,
            gold="include",
        ).exclude(comparison__gold_choice="")
        if left_out.exists():
            counts["gold_votes_left_out"] = left_out.count()
    if weighted:
        counts["weighting"] = "trust"
        counts["weight_sum"] = round(sum(t[3] for t in triples), 4)
        counts["votes_under_weight_1"] = sum(1 for t in triples if t[3] < 1.0)
    counts["comparisons"] = (
        len({r["comparison_id"] for r in rows})
        if with_rows
        else qs.values("comparison_id").distinct().count()
    )
    return Snapshot(
        cutoff_id=cutoff_id,
        choices=tuple(choices),
        preference_ids=[t[0] for t in triples],
        counts=counts,
        sha256=snapshot_hash(triples),
        rows=rows,
    )


def reward_models_for(*, project: Project) -> QuerySet[RewardModel]:
    return RewardModel.objects.filter(project=project).select_related("requested_by").order_by("-version")


def reward_model_active(*, project_id: int) -> RewardModel | None:
    return RewardModel.objects.filter(project_id=project_id, is_active=True).first()


def projects_with_reward_summary() -> list[dict]:
    """Projects for the training index: name, number of runs, active version, runs in progress."""
    out = []
    for project in Project.objects.order_by("name"):
        runs = RewardModel.objects.filter(project=project)
        active = runs.filter(is_active=True).values_list("version", flat=True).first()
        out.append(
            {
                "project": project,
                "runs": runs.count(),
                "active_version": active,
                "in_progress": runs.filter(status__in=["queued", "running"]).count(),
            }
        )
    return out


def loss_curve_points(curve, *, width: int = 240, height: int = 60, pad: int = 2) -> str:
    """SVG polyline points for a loss curve ([[step, loss], ...], [{"step", "loss"}] or [loss, ...]).

    Drawn server-side so the page needs no chart library; non-finite values are left out.
    """
    pts: list[tuple[float, float]] = []
    for i, item in enumerate(curve or []):
        if isinstance(item, dict):
            step, loss = item.get("step", i), item.get("loss")
        elif isinstance(item, list | tuple) and len(item) >= 2:
            step, loss = item[0], item[1]
        else:
            step, loss = i, item
        try:
            step, loss = float(step), float(loss)
        except (TypeError, ValueError):
            continue
        if loss == loss and abs(loss) != float("inf"):
            pts.append((step, loss))
    if len(pts) < 2:
        return ""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1.0)
    sy = (height - 2 * pad) / ((y1 - y0) or 1.0)
    return " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in pts)
