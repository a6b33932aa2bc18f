"""Agreement and rater statistics: pure Python (no Django), tested against hand-computed values.

- `majority`: the one definition of a comparison's majority and agreement; `majority_sql` is the
  same rule as SQL, the only majority the exports' SQL has (exporters/sql.py's `sel`). Both
  must exist: the exports pick and aggregate comparisons inside PostgreSQL, over a snapshot and
  without loading votes into Python, while the quality figures, gold candidates and the exports'
  streamed card numbers count in Python. tests/annotation/test_majority_rule.py runs both
  (the export's own CTE on the database) over a table of hand-made vote sets.
- `krippendorff_alpha`: Krippendorff's alpha for any number of raters per item with missing
  values, nominal or ordinal metric (Krippendorff 2011, "Computing Krippendorff's
  alpha-reliability", the coincidence-matrix form).
- `cohen_kappa`: Cohen's kappa of two raters over the items both rated (Cohen 1960).
- `vote_entropy`: Shannon entropy (bits) of one comparison's votes.
- `loo_agreement`: per vote, whether it matches the majority of the OTHER votes on its
  comparison (leave-one-out), so a rater is never compared with themselves.
- `binomial_test`: exact two-sided binomial test (the "minimum likelihood" p-value, as R's
  binom.test and SciPy's binomtest compute it).
- `reading_ms`: the reading-time model: characters of prompt and both responses at a
  reading speed in characters per second.
- `ordinal_level`: a vote on the five-point scale A ≫ A > tie < B ≪ B.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

from training.ml.stats import Estimate, wilson_interval

__all__ = [
    "CHOICES",
    "Estimate",
    "binomial_test",
    "cohen_kappa",
    "krippendorff_alpha",
    "loo_agreement",
    "majority",
    "majority_sql",
    "majority_top_sql",
    "ordinal_level",
    "reading_ms",
    "vote_entropy",
    "wilson_interval",
]

CHOICES = ("a", "b", "tie", "both_bad")


def majority(counts: Sequence[int]) -> tuple[str | None, float]:
    """(majority choice, agreement) of vote counts in CHOICES order: the most-voted choice, None
    when two or more share the top count; agreement = top count / votes (0 with no votes)."""
    votes = sum(counts)
    if votes == 0:
        return None, 0.0
    top = max(counts)
    winner = CHOICES[counts.index(top)] if list(counts).count(top) == 1 else None
    return winner, top / votes


def majority_sql(counts: Sequence[str], *, top: str, votes: str) -> tuple[str, str]:
    """`majority` in SQL: (majority expression, agreement expression) over SQL expressions of the
    vote counts in CHOICES order, of their greatest (`top`, e.g. a lateral column computed with
    `majority_top_sql`) and of the total votes. NULL majority when two or more counts share the
    top; agreement = top / votes rounded to 4 places (0 with no votes)."""
    if len(counts) != len(CHOICES):
        raise ValueError("one count per choice, in CHOICES order")
    at_top = " + ".join(f"({c} = {top})::int" for c in counts)
    winners = " ".join(f"WHEN {c} = {top} THEN '{choice}'" for c, choice in zip(counts, CHOICES, strict=True))
    return (
        f"CASE WHEN {at_top} > 1 THEN NULL {winners} END",
        f"coalesce(round({top}::numeric / nullif({votes}, 0), 4), 0)",
    )


def majority_top_sql(counts: Sequence[str]) -> str:
    """The greatest of the vote counts (`majority_sql`'s `top`)."""
    return f"greatest({', '.join(counts)})"


def ordinal_level(choice: str, strength: int | None) -> int | None:
    """A vote on the ordinal scale A ≫ A (-2), A > B (-1), tie (0), B > A (1), B ≫ A (2).

    Strength 1 is "better", 2 and 3 "much better"; both-bad votes say nothing about the order
    and have no level (left out of the ordinal alpha, kept in the nominal one)."""
    if choice == "tie":
        return 0
    if choice not in ("a", "b"):
        return None
    size = 2 if (strength or 1) >= 2 else 1
    return -size if choice == "a" else size


def _ordinal_delta(values: list, totals: Mapping) -> dict:
    """Krippendorff's ordinal metric: δ²(c, k) = (Σ_{g=c..k} n_g − (n_c + n_k)/2)²."""
    ordered = sorted(values)
    cumulative = {}
    for i, c in enumerate(ordered):
        for k in ordered[i:]:
            between = sum(totals[g] for g in ordered if c <= g <= k)
            cumulative[(c, k)] = cumulative[(k, c)] = (between - (totals[c] + totals[k]) / 2) ** 2
    return cumulative


def krippendorff_alpha(units: Iterable[Sequence[Hashable]], *, metric: str = "nominal") -> float:
    """Krippendorff's alpha over `units` (each the values its raters gave; missing values left
    out). Units with fewer than two values are not pairable and are ignored. nan when there is
    nothing to compare or every value is the same (no expected disagreement).

    metric: "nominal" (any two different values disagree equally) or "ordinal" (values are
    ranks; the distance counts how many values lie between them)."""
    coincidence: Counter = Counter()
    for unit in units:
        values = [v for v in unit if v is not None]
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nc - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    totals: Counter = Counter()
    for (c, _), n in coincidence.items():
        totals[c] += n
    n = sum(totals.values())
    if n <= 1 or len(totals) < 2:
        return math.nan
    if metric == "nominal":
        delta = {(c, k): 0.0 if c == k else 1.0 for c in totals for k in totals}
    elif metric == "ordinal":
        delta = _ordinal_delta(list(totals), totals)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    observed = sum(o * delta[key] for key, o in coincidence.items())
    expected = sum(totals[c] * totals[k] * delta[(c, k)] for c in totals for k in totals) / (n - 1)
    return 1.0 - observed / expected if expected else math.nan


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' labels on the same items, in the same order:
    (p_o − p_e) / (1 − p_e). nan with no items or when chance agreement is total."""
    if len(first) != len(second):
        raise ValueError("both raters need a label for every shared item")
    n = len(first)
    if n == 0:
        return math.nan
    observed = sum(1 for x, y in zip(first, second, strict=True) if x == y) / n
    a, b = Counter(first), Counter(second)
    expected = sum(a[c] * b[c] for c in a) / (n * n)
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


def vote_entropy(choices: Iterable[str]) -> float:
    """Shannon entropy in bits of one comparison's votes: 0 when all agree."""
    counts = Counter(choices)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(n / total * math.log2(n / total) for n in counts.values()) + 0.0


def loo_agreement(votes: Sequence[tuple[Hashable, str]]) -> dict[Hashable, bool | None]:
    """Per voter of one comparison's (voter, choice) votes: does their choice match the majority
    of the others' votes? None when the others have no single majority (fewer than one other
    vote, or a tie at the top)."""
    counts = Counter(choice for _, choice in votes)
    out: dict = {}
    for voter, choice in votes:
        counts[choice] -= 1
        winner, _ = majority([counts[c] for c in CHOICES])
        counts[choice] += 1
        out[voter] = None if winner is None else winner == choice
    return out


def binomial_test(successes: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided p-value of `successes` in `n` trials under success probability `p`: the
    total probability of every outcome no more likely than the one observed."""
    if n == 0:
        return 1.0
    if p <= 0.0 or p >= 1.0:  # only one outcome is possible
        return 1.0 if successes == (n if p >= 1.0 else 0) else 0.0
    # In log space (lgamma): math.comb(n, k) overflows a float from n of about 1,030, and a
    # project's left/right test has that many votes soon (bench/faults.py's fuzzing found the
    # 500 on a busy project).
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    log_pmf = [
        log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        for k in range(n + 1)
    ]
    cutoff = log_pmf[successes] + math.log1p(1e-7)
    return min(1.0, math.fsum(math.exp(v) for v in log_pmf if v <= cutoff))


def reading_ms(chars: int, chars_per_second: float) -> float:
    """How long reading `chars` characters takes at `chars_per_second`, in milliseconds."""
    return 1000.0 * chars / chars_per_second if chars_per_second > 0 else 0.0
