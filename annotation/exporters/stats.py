"""The dataset card's numbers for a raw-votes export, counted from the rows while they stream.

A separate aggregate query over the same snapshot costs PostgreSQL a second full pass over the
votes (about as much server time as the export's own read); counting here costs Python a few
C-level passes per batch (Counter, zip, set) and one small step per comparison. The numbers are
those of `annotation.exporters.sql.export_stats_sql` (same keys, same rounding), computed from
exactly the rows written, so the card always matches the file.

The rows must come ordered by comparison id (the export's ORDER BY).
"""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from itertools import compress, repeat
from operator import countOf, eq, itemgetter, or_

from annotation.exporters.sql import raw_column_index

_CHOICES = ("a", "b", "tie", "both_bad")
_FOUR = Decimal("0.0001")


def _round4(value: Decimal) -> Decimal:
    # PostgreSQL's round(numeric, 4) rounds halves away from zero (these values are never negative).
    return value.quantize(_FOUR, rounding=ROUND_HALF_UP)


class RawVoteStats:
    """Feed it every batch of raw-vote rows (`add`), then read `result()`.

    Everything per row or per comparison runs in C (Counter, map, zip, compress over columns
    taken with itemgetter): no Python bytecode per row, which keeps the card's numbers at a
    fraction of the encoding's cost. A comparison is counted once all its votes are in: the rows
    of the last comparison of a batch are held back until the next batch (or `result()`).
    """

    _NAMES = (
        "comparison_id", "choice", "shown_left", "unsafe_a", "unsafe_b", "round_id", "gold_choice",
        "created_at", "rater", "response_a_checkpoint", "response_b_checkpoint",
    )  # fmt: skip

    def __init__(self) -> None:
        index = raw_column_index()
        self._getters = [itemgetter(index[name]) for name in self._NAMES]
        self._cid = self._getters[0]
        self._held: list[tuple] = []
        self.left_wins = 0
        self.raters: set = set()
        self.checkpoints: set = set()
        self.first_vote_at = None
        self.last_vote_at = None
        self.comparisons = 0
        # (votes_a, votes_b, votes_tie, votes_both_bad) -> how many comparisons had these counts.
        self.shapes: Counter = Counter()
        self.unsafe_comparisons = 0
        self.gold_comparisons = 0
        self.without_round = 0
        self.rounds: set = set()

    def add(self, rows: list[tuple]) -> None:
        if not rows:
            return
        cid = self._cid
        if self._held:
            if cid(rows[0]) < cid(self._held[-1]):
                raise ValueError("raw-vote rows must come ordered by comparison id")
            rows = self._held + rows
        last = cid(rows[-1])
        start = len(rows) - 1
        while start > 0 and cid(rows[start - 1]) == last:
            start -= 1
        self._held = rows[start:]
        if start:
            self._count(rows[:start])

    def _count(self, rows: list[tuple]) -> None:
        """Rows holding every vote of each of their comparisons."""
        cid, choice, shown, ua, ub, rnd, gold, created, rater, cka, ckb = (
            list(map(get, rows)) for get in self._getters
        )
        self.left_wins += sum(map(eq, choice, shown))
        self.raters.update(rater)
        self.checkpoints.update(cka)
        self.checkpoints.update(ckb)
        first, last = min(created), max(created)
        if self.first_vote_at is None or first < self.first_vote_at:
            self.first_vote_at = first
        if self.last_vote_at is None or last > self.last_vote_at:
            self.last_vote_at = last

        ids = list(dict.fromkeys(cid))
        pairs = Counter(zip(cid, choice, strict=True))
        per_choice = [map(pairs.get, zip(ids, repeat(c)), repeat(0)) for c in _CHOICES]
        self.shapes.update(zip(*per_choice, strict=True))
        self.comparisons += len(ids)
        self.unsafe_comparisons += len(set(compress(cid, map(or_, ua, ub))))
        golds = dict(zip(cid, gold, strict=True))
        self.gold_comparisons += len(golds) - countOf(golds.values(), "")
        rounds = dict(zip(cid, rnd, strict=True))
        self.without_round += countOf(rounds.values(), None)
        self.rounds.update(rounds.values())

    def result(self) -> dict:
        """The numbers, under the keys of export_stats_sql, plus `rows` (= votes)."""
        if self._held:
            self._count(self._held)
            self._held = []
        majority: Counter = Counter()
        buckets: Counter = Counter()
        agreement_sum = Decimal(0)
        single = 0
        choice_votes = [0, 0, 0, 0]
        for counts, n in self.shapes.items():
            votes, top = sum(counts), max(counts)
            for i, count in enumerate(counts):
                choice_votes[i] += count * n
            majority[_CHOICES[counts.index(top)] if counts.count(top) == 1 else None] += n
            agreement = _round4(Decimal(top) / Decimal(votes))
            agreement_sum += agreement * n
            if agreement == 1:
                buckets["full"] += n
            elif agreement >= Decimal("0.75"):
                buckets["75"] += n
            elif agreement >= Decimal("0.5"):
                buckets["50"] += n
            else:
                buckets["low"] += n
            single += n if votes == 1 else 0
        mean = float(_round4(agreement_sum / self.comparisons)) if self.comparisons else 0.0
        votes = sum(choice_votes)
        return {
            "comparisons": self.comparisons,
            "votes": votes,
            **{f"votes_{c}": n for c, n in zip(_CHOICES, choice_votes, strict=True)},
            "left_wins": self.left_wins,
            **{f"majority_{c}": majority.get(c, 0) for c in _CHOICES},
            "majority_none": majority.get(None, 0),
            "mean_agreement": mean,
            "agreement_full": buckets["full"],
            "agreement_75": buckets["75"],
            "agreement_50": buckets["50"],
            "agreement_low": buckets["low"],
            "unsafe_comparisons": self.unsafe_comparisons,
            "single_vote_comparisons": single,
            "gold_comparisons": self.gold_comparisons,
            "comparisons_without_round": self.without_round,
            "rounds": sorted(r for r in self.rounds if r is not None),
            "first_vote_at": self.first_vote_at,
            "last_vote_at": self.last_vote_at,
            "raters": len(self.raters),
            "checkpoints": sorted(c for c in self.checkpoints if c is not None),
            "rows": votes,
        }
