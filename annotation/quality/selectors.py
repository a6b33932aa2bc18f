"""Reads for the raters page, the quality panel, the rater's own box and the quality API.

Charts are drawn on the server as SVG geometry (as the leaderboard's forest plot and the loss
curves are): the templates only place the numbers computed here.
"""

from __future__ import annotations

import math

from django.contrib.auth import get_user_model
from django.db.models import Max

from annotation.models import Preference, Project, RaterState
from annotation.quality.compute import KAPPA_MIN_SHARED, project_quality
from annotation.quality.service import speed_of, vote_records
from annotation.quality.stats import binomial_test, wilson_interval

TOO_FAST_MESSAGE_SHARE = 0.2  # the rater's gentle message: over this share of too-fast votes ...
TOO_FAST_MESSAGE_MIN = 5  # ... among at least this many timed votes
SORTS = ("rater", "votes", "gold", "agreement", "too_fast", "left", "trust", "state", "last_active")


def _value(numbers: dict, name: str) -> float | None:
    item = numbers.get(name) or {}
    return item.get("value")


def my_quality(*, rater_id: int, project_id: int) -> dict | None:
    """What a rater sees of their own quality: gold accuracy with its interval, a gentle note
    when many votes are too fast, and why they are paused."""
    state = RaterState.objects.filter(project_id=project_id, rater_id=rater_id).first()
    if state is None:
        return None
    numbers = state.numbers or {}
    gold = numbers.get("gold") or {}
    fast = numbers.get("too_fast") or {}
    too_fast = (fast.get("n") or 0) >= TOO_FAST_MESSAGE_MIN and (
        fast.get("value") or 0
    ) > TOO_FAST_MESSAGE_SHARE
    return {
        "state": state.state,
        "paused": state.state == RaterState.State.PAUSED,
        "reason": state.reason,
        "gold": gold if gold.get("n") else None,
        "too_fast": too_fast,
    }


def sparkline(curve: list[float], *, width: int = 90, height: int = 20) -> str:
    """SVG polyline points of a rater's stored curve (cumulative gold accuracy, 0..1 on a fixed
    scale; `service.gold_curve`); empty under two points."""
    if len(curve) < 2:
        return ""
    step = (width - 2) / (len(curve) - 1)
    return " ".join(f"{1 + i * step:.1f},{height - 1 - m * (height - 2):.1f}" for i, m in enumerate(curve))


def _last_active(project: Project) -> dict:
    return dict(
        Preference.objects.filter(comparison__project=project)
        .values("rater_id")
        .annotate(last=Max("created_at"))
        .values_list("rater_id", "last")
    )


# A rate with no evidence yet (a state an override created before the first refresh): the
# Wilson interval over no trials, the same shape as computed rates (the API schema's).
NO_EVIDENCE = {"value": None, "low": 0.0, "high": 1.0, "n": 0}


def raters_rows(*, project: Project, sort: str = "trust", descending: bool = False) -> list[dict]:
    """One row per rater of the project with their figures, sorted by `sort`."""
    names = dict(get_user_model().objects.values_list("pk", "username"))
    last = _last_active(project)
    rows = []
    for s in RaterState.objects.filter(project=project):
        n = s.numbers or {}
        rows.append(
            {
                "rater_id": s.rater_id,
                "rater": names.get(s.rater_id, str(s.rater_id)),
                "votes": s.votes,
                "gold": n.get("gold") or NO_EVIDENCE,
                "agreement": n.get("agreement") or NO_EVIDENCE,
                "too_fast": n.get("too_fast") or NO_EVIDENCE,
                "left": n.get("left") or NO_EVIDENCE,
                "left_p": n.get("left_p"),
                "kappa_mean": n.get("kappa_mean"),
                "trust": s.trust,
                "likeliest": s.likeliest,
                "state": s.state,
                "state_label": RaterState.State(s.state).label,
                "pinned": s.pinned,
                "last_active": last.get(s.rater_id),
                "spark": sparkline(s.history or []),
            }
        )
    sort = sort if sort in SORTS else "trust"

    def key(row):
        value = row[sort]
        if isinstance(value, dict):
            value = value.get("value")
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, value if not missing else 0)

    rows.sort(key=key, reverse=descending)
    if descending:  # keep the missing values last either way
        rows.sort(key=lambda r: key(r)[0])
    return rows


def histogram(
    values: list[float], *, bins: int = 10, width: int = 240, height: int = 80, top: float = 1.0
) -> dict:
    """SVG bars of values in [0, top] in `bins` equal bins (the last bin holds `top` itself)."""
    counts = [0] * bins
    for v in values:
        if v is not None and not math.isnan(v):
            counts[min(bins - 1, max(0, int(v / top * bins)))] += 1
    tallest = max(counts) or 1
    bar = width / bins
    edges = [round(i * top / bins, 4) for i in range(bins + 1)]
    return {
        "width": width,
        "height": height + 14,
        "bars": [
            {
                "x": round(i * bar + 1, 1),
                "w": round(bar - 2, 1),
                "y": round(height - c / tallest * height, 1),
                "h": round(c / tallest * height, 1),
                "count": c,
                "low": edges[i],
                "high": edges[i + 1],
                "label": f"{edges[i]:g}–{edges[i + 1]:g}",
            }
            for i, c in enumerate(counts)
        ],
        "n": sum(counts),
        "top": f"{top:g}",
        "axis_y": height + 12,
    }


ENTROPY_TOP = 2.0  # bits: the most a vote over the four choices can have (log2 4)


def _kappa_rows(kappas: list[tuple]) -> list[dict]:
    """Pairwise Cohen's kappa rows (raters sharing at least KAPPA_MIN_SHARED pairs; rater ids and
    account names), lowest kappa first (the pairs that disagree most); an undefined kappa (nan:
    both raters gave one same label throughout) last, as None."""
    ids = {r for r1, r2, *_ in kappas for r in (r1, r2)}
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
    rows = [
        {
            "first": r1,
            "second": r2,
            "first_name": names.get(r1, str(r1)),
            "second_name": names.get(r2, str(r2)),
            "shared": n,
            "kappa": None if math.isnan(k) else round(k, 3),
        }
        for r1, r2, n, k in kappas
    ]
    rows.sort(key=lambda r: (r["kappa"] is None, r["kappa"] or 0.0, -r["shared"]))
    return rows


def quality_panel(*, project: Project) -> dict:
    """The project's agreement figures, computed from its votes now."""
    q = project_quality(vote_records(project_id=project.pk), speed=speed_of(project))
    left = wilson_interval(q.human_left, q.human_sided)
    kappas = [k for *_, k in q.kappas if not math.isnan(k)]
    return {
        "alpha_ordinal": None if math.isnan(q.alpha_ordinal) else round(q.alpha_ordinal, 3),
        "alpha_nominal": None if math.isnan(q.alpha_nominal) else round(q.alpha_nominal, 3),
        "kappa_pairs": len(kappas),
        "kappa_mean": round(sum(kappas) / len(kappas), 3) if kappas else None,
        "left": left.as_dict(),
        "left_p": binomial_test(q.human_left, q.human_sided),
        "entropy_mean": round(sum(q.entropy.values()) / len(q.entropy), 3) if q.entropy else None,
        "agreement_hist": histogram(list(q.agreement.values())),
        "entropy_hist": histogram(list(q.entropy.values()), top=ENTROPY_TOP, bins=8),
        "kappas": _kappa_rows(q.kappas),
        "kappa_min_shared": KAPPA_MIN_SHARED,
        "gold_hist": histogram([r.rate("gold").value for r in q.raters.values() if r.evidence.gold_n > 0]),
    }
