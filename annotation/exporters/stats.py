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
from operator import countOf, itemgetter, or_

from annotation.exporters.filters import ExportFilters
from annotation.exporters.sql import VOTER_KINDS, raw_column_index
from annotation.quality import stats as quality_stats
from annotation.quality.stats import CHOICES as _CHOICES

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
        "created_at", "rater", "response_a_checkpoint", "response_b_checkpoint", "voter_kind",
        "prompt_id",
    )  # fmt: skip

    def __init__(self, filters: ExportFilters | None = None) -> None:
        index = raw_column_index(filters or ExportFilters())
        self._getters = [itemgetter(index[name]) for name in self._NAMES]
        self._split = itemgetter(index["split"]) if "split" in index else None
        self._cid = self._getters[0]
        self._held: list[tuple] = []
        # (voter kind, choice, shown_left) -> votes; (voter kind, counts per choice) -> comparisons
        self.sides: Counter = Counter()
        self.kind_shapes: Counter = Counter()
        self.accounts: set = set()  # (voter kind, rater)
        self.prompts: set = set()  # (prompt id, split), with a split
        self.test_votes = 0
        self.checkpoints: set = set()
        self.first_vote_at = None
        self.last_vote_at = None
        self.comparisons = 0
        # ((votes_a, votes_b, votes_tie, votes_both_bad), split) -> how many comparisons had these.
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
        cid, choice, shown, ua, ub, rnd, gold, created, rater, cka, ckb, kind, prompt = (
            list(map(get, rows)) for get in self._getters
        )
        self.sides.update(zip(kind, choice, shown, strict=True))
        self.accounts.update(zip(kind, rater, strict=True))
        self._count_kinds(cid, kind, choice)
        splits = list(map(self._split, rows)) if self._split else list(repeat(None, len(rows)))
        if self._split:
            self.prompts.update(zip(prompt, splits, strict=True))
            self.test_votes += countOf(splits, "test")
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
        split_of = dict(zip(cid, splits, strict=True))
        self.shapes.update(zip(zip(*per_choice, strict=True), map(split_of.get, ids), strict=True))
        self.comparisons += len(ids)
        self.unsafe_comparisons += len(set(compress(cid, map(or_, ua, ub))))
        golds = dict(zip(cid, gold, strict=True))
        self.gold_comparisons += len(golds) - countOf(golds.values(), "")
        rounds = dict(zip(cid, rnd, strict=True))
        self.without_round += countOf(rounds.values(), None)
        self.rounds.update(rounds.values())

    def _count_kinds(self, cid: list, kind: list, choice: list) -> None:
        """Votes per choice of each (comparison, voter kind), tallied by shape."""
        keys = list(dict.fromkeys(zip(cid, kind, strict=True)))
        triples = Counter(zip(cid, kind, choice, strict=True))
        ids, kinds = (list(col) for col in zip(*keys, strict=True))
        per_choice = [map(triples.get, zip(ids, kinds, repeat(c)), repeat(0)) for c in _CHOICES]
        self.kind_shapes.update(zip(kinds, zip(*per_choice, strict=True), strict=True))

    def _voter_numbers(self) -> dict:
        """The voters table's numbers, under export_stats_sql's keys."""
        out: dict = {}
        for kind in VOTER_KINDS.values():
            votes = multi = 0
            agreement_sum = Decimal(0)
            for (k, counts), n in self.kind_shapes.items():
                if k != kind:
                    continue
                votes += sum(counts) * n
                if sum(counts) >= 2:
                    multi += n
                    agreement_sum += _round4(Decimal(max(counts)) / Decimal(sum(counts))) * n
            sided = sum(n for (k, c, side), n in self.sides.items() if k == kind and c in ("a", "b") and side)
            left = sum(n for (k, c, side), n in self.sides.items() if k == kind and side and c == side)
            out |= {
                f"voters_{kind}_votes": votes,
                f"voters_{kind}_accounts": sum(1 for k, _ in self.accounts if k == kind),
                f"voters_{kind}_multi": multi,
                f"voters_{kind}_agreement": float(_round4(agreement_sum / multi)) if multi else None,
                f"voters_{kind}_sided": sided,
                f"voters_{kind}_left_wins": left,
            }
        return out

    def _split_numbers(self, test_comparisons: int, test_pairs: int) -> dict:
        if self._split is None:
            return {}
        return {
            "prompts": len({p for p, _ in self.prompts}),
            "split_test_prompts": sum(1 for _, side in self.prompts if side == "test"),
            "split_test_comparisons": test_comparisons,
            "split_test_pairs": test_pairs,
            "split_test_votes": self.test_votes,
        }

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
        test_comparisons = test_pairs = 0
        for (counts, split), n in self.shapes.items():
            votes, top = sum(counts), max(counts)
            for i, count in enumerate(counts):
                choice_votes[i] += count * n
            winner, _ = quality_stats.majority(counts)  # the one definition of a majority
            majority[winner] += n
            if split == "test":
                test_comparisons += n
                test_pairs += n if winner in ("a", "b") else 0
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
            **self._voter_numbers(),
            "checkpoints": sorted(c for c in self.checkpoints if c is not None),
            **self._split_numbers(test_comparisons, test_pairs),
            "rows": votes,
        }
