"""Which two candidates of a prompt a round publishes for human rating, and which pair of a
prompt's candidates the policy update learns from.

Pure Python (no Django) on plain `Candidate` records; the round's steps map their rows to these
and back by `id`. Unit-tested on its own (tests/training/ml/test_pair_selection.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    id: int
    text: str
    shaped_reward: float | None
    candidate_index: int = 0
    blocked: bool = False


@dataclass(frozen=True)
class PairChoice:
    a: Candidate
    b: Candidate
    strategy: str  # "new_vs_old" or "uncertain"

    @property
    def gap(self) -> float:
        return abs(self.a.shaped_reward - self.b.shaped_reward)


def _same_text(a: Candidate, b: Candidate) -> bool:
    return a.text.strip() == b.text.strip()


def _best(cands: list[Candidate]) -> Candidate:
    return max(cands, key=lambda c: (c.shaped_reward, -c.candidate_index))


def _worst(cands: list[Candidate]) -> Candidate:
    return min(cands, key=lambda c: (c.shaped_reward, c.candidate_index))


def closest_pair(cands: list[Candidate]) -> tuple[Candidate, Candidate] | None:
    """Two candidates with different text whose shaped rewards are closest (the reward model is
    least sure which is better): (higher, lower)."""
    ranked = sorted(cands, key=lambda c: (c.shaped_reward, c.candidate_index))
    best = None
    for i in range(len(ranked)):
        for j in range(i + 1, len(ranked)):
            a, b = ranked[i], ranked[j]
            if _same_text(a, b):
                continue
            gap = abs(b.shaped_reward - a.shaped_reward)
            if best is None or gap < best[0]:
                best = (gap, b, a)
            break  # sorted: the next j only widens the gap
    return (best[1], best[2]) if best else None


def choose_pair(strategy: str, old: list[Candidate], new: list[Candidate]) -> PairChoice | None:
    """The pair to publish, or None. Only unblocked, scored candidates: "new_vs_old" puts the new
    policy's best against the old one's best (new is A); otherwise, or when those two say the
    same, the closest pair of the new policy's candidates, else of the old one's."""
    old = [c for c in old if not c.blocked and c.shaped_reward is not None]
    new = [c for c in new if not c.blocked and c.shaped_reward is not None]
    if strategy == "new_vs_old" and new and old:
        a, b = _best(new), _best(old)
        if not _same_text(a, b):
            return PairChoice(a, b, "new_vs_old")
    for pool in (new, old):
        pair = closest_pair(pool)
        if pair:
            return PairChoice(pair[0], pair[1], "uncertain")
    return None


def best_vs_worst(cands: list[Candidate]) -> tuple[Candidate, Candidate] | None:
    """(chosen, rejected) for the policy update from one prompt's scored candidates: the best
    unblocked one against the worst of all; None when nothing is allowed or both say the same.
    A blocked candidate is never the chosen side."""
    group = [c for c in cands if c.shaped_reward is not None]
    allowed = [c for c in group if not c.blocked]
    if not allowed:
        return None
    best, worst = _best(allowed), _worst(group)
    if best.id == worst.id or _same_text(best, worst):
        return None
    return best, worst
