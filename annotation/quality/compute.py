"""Per-rater and per-project quality from plain vote records: the one place where rater quality
is computed (the service loads the records and stores the results; the bench reuses it).
Pure Python, no Django."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from annotation.quality.stats import (
    CHOICES,
    binomial_test,
    cohen_kappa,
    krippendorff_alpha,
    loo_agreement,
    majority,
    ordinal_level,
    reading_ms,
    vote_entropy,
    wilson_interval,
)
from annotation.quality.trust import Evidence, trust_score

KAPPA_MIN_SHARED = 5  # a pair of raters needs this many shared items for a kappa


@dataclass(frozen=True)
class VoteRecord:
    rater: Hashable
    comparison: Hashable
    choice: str
    strength: int | None = None
    shown_left: str | None = None  # None: never shown on a screen (imported)
    server_ms: int | None = None  # lease to submit, measured by the server
    chars: int = 0  # characters of the prompt and both responses
    gold: str = ""  # the comparison's known answer, "" when not gold
    human: bool = True  # a rater's vote (not a judge's, not imported)


@dataclass(frozen=True)
class Speed:
    chars_per_second: float = 25.0  # reading speed of the reading-time model
    too_fast_fraction: float = 0.5  # faster than this share of the reading time: too fast

    def too_fast(self, server_ms: int | None, chars: int) -> bool | None:
        if server_ms is None:
            return None
        return server_ms < self.too_fast_fraction * reading_ms(chars, self.chars_per_second)


@dataclass
class RaterQuality:
    rater: Hashable
    votes: int = 0
    evidence: Evidence = field(default_factory=Evidence)
    trust: float = 1.0
    likeliest: str = "careful"
    left_p: float = 1.0  # binomial test of left picks against 1/2
    kappa_mean: float = math.nan
    history: list = field(default_factory=list)  # per gold answer, in order: 1 right / 0 wrong

    def rate(self, name: str):
        e = self.evidence
        k, n = {
            "gold": (e.gold_right, e.gold_n),
            "agreement": (e.agree, e.agree_n),
            "too_fast": (e.fast, e.timed_n),
            "left": (e.left, e.sided_n),
        }[name]
        return wilson_interval(k, n)

    def as_dict(self) -> dict:
        out = {
            "votes": self.votes,
            "trust": round(self.trust, 4),
            "likeliest": self.likeliest,
            "left_p": self.left_p,
            "kappa_mean": None if math.isnan(self.kappa_mean) else round(self.kappa_mean, 4),
        }
        for name in ("gold", "agreement", "too_fast", "left"):
            est = self.rate(name)
            out[name] = {
                "value": None if math.isnan(est.value) else round(est.value, 4),
                "low": round(est.low, 4),
                "high": round(est.high, 4),
                "n": est.n,
            }
        return out


@dataclass
class ProjectQuality:
    raters: dict[Hashable, RaterQuality]
    alpha_ordinal: float
    alpha_nominal: float
    entropy: dict[Hashable, float]  # per comparison with 2+ votes
    agreement: dict[Hashable, float]  # per comparison with 2+ votes: share of its majority choice
    kappas: list[tuple[Hashable, Hashable, int, float]]  # (rater, rater, shared items, kappa)
    human_left: int = 0
    human_sided: int = 0


def _by_comparison(votes: Sequence[VoteRecord]) -> dict:
    out: dict = defaultdict(list)
    for v in votes:
        out[v.comparison].append(v)
    return out


def _kappas(votes: Sequence[VoteRecord]) -> list[tuple]:
    labels: dict = defaultdict(dict)
    for v in votes:
        if v.human:
            labels[v.rater][v.comparison] = v.choice
    out = []
    for r1, r2 in combinations(sorted(labels, key=str), 2):
        shared = sorted(labels[r1].keys() & labels[r2].keys(), key=str)
        if len(shared) >= KAPPA_MIN_SHARED:
            kappa = cohen_kappa([labels[r1][c] for c in shared], [labels[r2][c] for c in shared])
            out.append((r1, r2, len(shared), kappa))
    return out


def _rater_counts(votes: Iterable[VoteRecord], agreed: dict, speed: Speed) -> dict[Hashable, dict]:
    counts: dict = defaultdict(lambda: defaultdict(int))
    for i, v in enumerate(votes):
        if not v.human:
            continue
        c = counts[v.rater]
        c["votes"] += 1
        if v.gold:
            c["gold_n"] += 1
            c["gold_right"] += v.choice == v.gold
            c.setdefault("history", []).append(int(v.choice == v.gold))
        if agreed.get(i) is not None:
            c["agree_n"] += 1
            c["agree"] += bool(agreed[i])
        fast = speed.too_fast(v.server_ms, v.chars)
        if fast is not None:
            c["timed_n"] += 1
            c["fast"] += fast
        if v.choice in ("a", "b") and v.shown_left:
            c["sided_n"] += 1
            c["left"] += v.choice == v.shown_left
    return counts


def project_quality(votes: Sequence[VoteRecord], *, speed: Speed | None = None) -> ProjectQuality:
    """Every figure of the raters page and the quality panel, from the project's votes in the
    order they were cast. Majorities count every vote (raters, judges, imports); per-rater
    figures, alpha and kappa count human votes."""
    speed = speed or Speed()
    groups = _by_comparison(votes)
    index = {id(v): i for i, v in enumerate(votes)}
    agreed: dict[int, bool | None] = {}
    for group in groups.values():
        result = loo_agreement([(index[id(v)], v.choice) for v in group])
        agreed.update(result)
    human_groups = [[v for v in g if v.human] for g in groups.values()]
    alpha_nominal = krippendorff_alpha(([v.choice for v in g] for g in human_groups), metric="nominal")
    alpha_ordinal = krippendorff_alpha(
        ([ordinal_level(v.choice, v.strength) for v in g] for g in human_groups), metric="ordinal"
    )
    entropy = {cid: vote_entropy(v.choice for v in g) for cid, g in groups.items() if len(g) >= 2}
    agreement = {
        cid: majority([sum(1 for v in groups[cid] if v.choice == c) for c in CHOICES])[1] for cid in entropy
    }
    kappas = _kappas(votes)
    per_rater_kappa: dict = defaultdict(list)
    for r1, r2, _, kappa in kappas:
        if not math.isnan(kappa):
            per_rater_kappa[r1].append(kappa)
            per_rater_kappa[r2].append(kappa)
    raters = {}
    left = sided = 0
    for rater, c in _rater_counts(votes, agreed, speed).items():
        evidence = Evidence(**{k: c[k] for k in Evidence.__dataclass_fields__})
        trust = trust_score(evidence)
        ks = per_rater_kappa.get(rater)
        raters[rater] = RaterQuality(
            rater=rater,
            votes=c["votes"],
            evidence=evidence,
            trust=trust.value,
            likeliest=trust.likeliest,
            left_p=binomial_test(evidence.left, evidence.sided_n),
            kappa_mean=sum(ks) / len(ks) if ks else math.nan,
            history=c.get("history", []),
        )
        left, sided = left + evidence.left, sided + evidence.sided_n
    return ProjectQuality(
        raters=raters,
        alpha_ordinal=alpha_ordinal,
        alpha_nominal=alpha_nominal,
        entropy=entropy,
        agreement=agreement,
        kappas=kappas,
        human_left=left,
        human_sided=sided,
    )
