"""Which two candidates of a prompt a round publishes for human rating, and which pair of a
prompt's candidates the policy update learns from.

Pure Python (no Django) on plain `Candidate` records; the round's steps map their rows to these
and back by `id`. Unit-tested on its own (tests/training/ml/test_pair_selection.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    id: int
    text: str
    shaped_reward: float | None
    candidate_index: int = 0
    blocked: bool = False
    truncated: bool = False  # hit the token limit before its end of turn
    reward: float | None = None  # the reward model's raw score (its Bradley–Terry logit)


@dataclass(frozen=True)
class PairChoice:
    a: Candidate
    b: Candidate
    strategy: str  # "new_vs_old", "uncertain" or "random"
    reason: str = ""  # why these two, in words, stored with the published pair

    @property
    def gap(self) -> float:
        return abs(self.a.shaped_reward - self.b.shaped_reward)


def _same_text(a: Candidate, b: Candidate) -> bool:
    return a.text.strip() == b.text.strip()


def _best(cands: list[Candidate]) -> Candidate:
    return max(cands, key=lambda c: (c.shaped_reward, -c.candidate_index))


def _worst(cands: list[Candidate]) -> Candidate:
    return min(cands, key=lambda c: (c.shaped_reward, c.candidate_index))


def _bt_probability(a: Candidate, b: Candidate) -> float:
    """The reward model's own P(a ≻ b) = sigmoid(r_a − r_b) (Bradley–Terry on raw scores; the
    shaped reward when a candidate has no raw score)."""
    ra = a.reward if a.reward is not None else a.shaped_reward
    rb = b.reward if b.reward is not None else b.shaped_reward
    d = max(-700.0, min(700.0, ra - rb))
    return 1.0 / (1.0 + math.exp(-d))


def most_uncertain_pair(cands: list[Candidate]) -> tuple[Candidate, Candidate, float] | None:
    """Uncertainty sampling (Lewis & Gale 1994): the two different texts whose outcome the reward
    model is least sure of, P(a ≻ b) closest to 1/2 (the largest Bernoulli entropy), from its raw
    scores, so a harm or truncation term does not decide which pair is informative:
    (higher, lower, P)."""
    best = None
    for i, a in enumerate(cands):
        for b in cands[i + 1 :]:
            if _same_text(a, b):
                continue
            p = _bt_probability(a, b)
            key = (abs(p - 0.5), min(a.candidate_index, b.candidate_index))
            if best is None or key < best[0]:
                best = (key, (a, b, p) if p >= 0.5 else (b, a, 1 - p))
    return best[1] if best else None


def _random_pair(cands: list[Candidate], rng: random.Random) -> tuple[Candidate, Candidate] | None:
    pairs = [(a, b) for i, a in enumerate(cands) for b in cands[i + 1 :] if not _same_text(a, b)]
    return rng.choice(pairs) if pairs else None


def choose_pair(
    strategy: str,
    old: list[Candidate],
    new: list[Candidate],
    *,
    explore: float = 0.0,
    rng: random.Random | None = None,
) -> PairChoice | None:
    """The pair to publish, or None, with the reason. Only unblocked, scored candidates.

    "new_vs_old": the new policy's best against the old one's best (new is A); when those two
    say the same, as "uncertain". "uncertain": uncertainty sampling with ε-greedy exploration
    (Sutton & Barto 2018, ch. 2): with probability `explore` a uniformly random pair (so the
    reward model also hears about pairs it is wrongly sure of), else the pair whose outcome the
    reward model is least sure of (`most_uncertain_pair`); the new policy's candidates first,
    else the old one's. "random": a uniformly random pair (the benchmark's baseline). `rng`
    is seeded by the caller (round seed and prompt), so a rerun picks the same pairs."""
    rng = rng or random.Random(0)
    old = [c for c in old if not c.blocked and c.shaped_reward is not None]
    new = [c for c in new if not c.blocked and c.shaped_reward is not None]
    if strategy == "new_vs_old" and new and old:
        a, b = _best(new), _best(old)
        if not _same_text(a, b):
            why = f"new policy's best (shaped {a.shaped_reward:.3f}) vs previous policy's best ({b.shaped_reward:.3f})"
            return PairChoice(a, b, "new_vs_old", why)
    draw = rng.random()
    for pool, who in ((new, "new"), (old, "previous")):
        if strategy == "random" or draw < explore:
            pair = _random_pair(pool, rng)
            if pair:
                why = (
                    "random pair (baseline strategy)"
                    if strategy == "random"
                    else f"exploration: a random pair (probability {explore:g}) of {len(pool)} {who} policy candidates"
                )
                return PairChoice(pair[0], pair[1], "random" if strategy == "random" else "uncertain", why)
            continue
        found = most_uncertain_pair(pool)
        if found:
            a, b, p = found
            why = f"most uncertain: reward model's P(A ≻ B) = {p:.3f}, closest to 1/2 of {len(pool)} {who} policy candidates"
            return PairChoice(a, b, "uncertain", why)
    return None


def best_vs_worst(cands: list[Candidate]) -> tuple[Candidate, Candidate] | None:
    """(chosen, rejected) for the policy update from one prompt's scored candidates: the best
    unblocked one against the worst of all; None when nothing is allowed or both say the same.

    A blocked candidate is never the chosen side. A truncated one (no end of turn before the
    token limit) is chosen only when no unblocked candidate of the prompt ended: its shaped
    reward already carries `missing_eos_penalty`, and the update trains a truncated side as
    the open prefix it is, with no end of turn added (`training.ml.dpo`: TRL's chat template
    would otherwise close it, and DPO would learn to stop mid-sentence). Without this fallback
    a policy that rarely ends within the limit (SmolLM2-135M often runs past 256 tokens) gives
    a round no pair at all."""
    group = [c for c in cands if c.shaped_reward is not None]
    allowed = [c for c in group if not c.blocked]
    if not allowed:
        return None
    worst = _worst(group)
    for pool in ([c for c in allowed if not c.truncated], allowed):  # complete ones first
        if pool:
            best = _best(pool)
            if best.id != worst.id and not _same_text(best, worst):
                return best, worst
    return None
