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
    head_scores: tuple[float, ...] | None = None  # each ensemble head's score (training.ml.ensemble)


@dataclass(frozen=True)
class PairChoice:
    a: Candidate
    b: Candidate
    strategy: str  # "new_vs_old", "uncertain", "ensemble" or "random"
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


@dataclass(frozen=True)
class Disagreement:
    """How K heads see "a beats b": P_k = sigmoid(r_k(a) − r_k(b)) summarised over the heads."""

    mean: float
    sd: float  # population sd of P_k across the heads: the selection key
    low: float
    high: float
    heads: int

    def describe(self) -> str:
        return (
            f"ensemble disagreement: P(A ≻ B) {self.low:.2f}–{self.high:.2f} across {self.heads} heads, "
            f"sd {self.sd:.3f} (mean {self.mean:.2f})"
        )


def _sigmoid(d: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, d))))


def head_disagreement(scores_a: tuple[float, ...], scores_b: tuple[float, ...]) -> Disagreement:
    """The heads' spread about P(a ≻ b). The sd of P_k is the disagreement Christiano et al.
    2017 query by (variance of the ensemble's predictions); a pair every head calls the same
    way, sure or unsure, scores 0."""
    ps = [_sigmoid(a - b) for a, b in zip(scores_a, scores_b, strict=True)]
    mean = sum(ps) / len(ps)
    sd = math.sqrt(sum((p - mean) ** 2 for p in ps) / len(ps))
    return Disagreement(mean, sd, min(ps), max(ps), len(ps))


def most_disputed_pair(cands: list[Candidate]) -> tuple[Candidate, Candidate, Disagreement] | None:
    """Ensemble disagreement (Christiano et al. 2017; heads on one backbone as in Dwaracherla
    et al. 2024): the two different texts whose outcome the heads disagree about most (largest
    sd of P_k(a ≻ b)), the one the heads favour on average first: (A, B, disagreement). Only
    candidates with head scores count."""
    scored = [c for c in cands if c.head_scores]
    best = None
    for i, a in enumerate(scored):
        for b in scored[i + 1 :]:
            if _same_text(a, b):
                continue
            d = head_disagreement(a.head_scores, b.head_scores)
            key = (-d.sd, min(a.candidate_index, b.candidate_index))
            if best is None or key < best[0]:
                flipped = Disagreement(1 - d.mean, d.sd, 1 - d.high, 1 - d.low, d.heads)
                best = (key, (a, b, d) if d.mean >= 0.5 else (b, a, flipped))
    return best[1] if best else None


NO_HEADS = "no head ensemble on the reward model that scored these (trained without one): "


def _informative(strategy: str, pool: list[Candidate], who: str) -> PairChoice | None:
    """The pair `strategy` finds most informative in `pool`: ensemble disagreement when its
    candidates carry head scores, else (and for "uncertain") the reward model's uncertainty."""
    note = ""
    if strategy == "ensemble":
        found = most_disputed_pair(pool)
        if found:
            a, b, d = found
            return PairChoice(a, b, "ensemble", f"{d.describe()}, of {len(pool)} {who} policy candidates")
        note = NO_HEADS + "fell back to uncertainty; " if all(not c.head_scores for c in pool) else ""
    found = most_uncertain_pair(pool)
    if found:
        a, b, p = found
        why = f"most uncertain: reward model's P(A ≻ B) = {p:.3f}, closest to 1/2 of {len(pool)} {who} policy candidates"
        return PairChoice(a, b, "uncertain", note + why)
    return None


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
    else the old one's. "ensemble": the same ε-greedy exploration, else the pair the reward
    model's head ensemble disagrees about most (`most_disputed_pair`); candidates without head
    scores (a model trained before heads existed) fall back to "uncertain", and the reason says
    so. "random": a uniformly random pair (the benchmark's baseline). `rng`
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
                label = strategy if strategy in ("random", "ensemble") else "uncertain"
                return PairChoice(pair[0], pair[1], label, why)
            continue
        choice = _informative(strategy, pool, who)
        if choice:
            return choice
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
