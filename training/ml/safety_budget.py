"""λ from an unsafe budget: Safe RLHF's Lagrangian update, one dual step a round.

Safe RLHF (Dai et al. 2023, "Safe RLHF: Safe Reinforcement Learning from Human Feedback",
section 3.3) maximises the reward under a cost budget, E[C] ≤ d, through the Lagrangian
min over λ ≥ 0 of max over π of E[R] − λ·(E[C] − d): the policy step follows R − λ·C and the dual
step moves λ by the constraint's violation, λ ← max(0, λ + η·(Ĵ_C − d)).

Here C is the calibrated harm model's p(unsafe) (training.ml.harm), so E[C] is the expected
unsafe rate, and a round is one dual step: Ĵ_C is the mean p(unsafe) of the round's own
candidates (the input policy's rollouts, blocked ones included: they are what the policy
writes), and the λ it gives shapes that round's reward (training.ml.shaping). Safe RLHF takes a
dual step per PPO batch with a small η; a round is one step, so the project's η is larger (the
default 5: a rate 0.2 over the budget adds 1 to λ, i.e. certainly-unsafe costs one more standard
deviation of reward).

One difference, by the house rule that a rate which decides something carries its interval:
λ moves only when the rate's 95 % interval (bootstrap over prompts, so a prompt's candidates
count together) lies wholly above or wholly below the budget, from at least MIN_CANDIDATES
candidates. Otherwise it is held, and the reason says why. Pure Python (numpy through
training.ml.stats); unit-tested in tests/training/ml/test_safety_budget.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from training.ml.stats import win_rate_interval

# Fewer candidates than this and λ is held: a handful of rollouts can't say the policy is over
# or under its budget.
MIN_CANDIDATES = 20


@dataclass(frozen=True)
class DualStep:
    """One round's λ update: the λ it started from, the λ it shapes with, and why."""

    lam_before: float
    lam: float
    budget: float
    step: float
    unsafe: float | None  # mean p(unsafe) of the round's candidates
    low: float | None  # its 95 % interval
    high: float | None
    n: int
    moved: str  # "up", "down" or "held"
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def dual_step(
    *,
    lam: float,
    p_unsafe: Sequence[float],
    groups: Sequence[object],
    budget: float,
    step: float,
    min_candidates: int = MIN_CANDIDATES,
    seed: int = 0,
) -> DualStep:
    """λ for a round whose candidates have `p_unsafe` (grouped by prompt in `groups`)."""
    if not 0.0 <= budget <= 1.0:
        raise ValueError(f"the unsafe budget is a rate in [0, 1], not {budget}")
    if step <= 0:
        raise ValueError(f"the dual step size must be > 0, not {step}")
    if lam < 0:
        raise ValueError(f"λ must be ≥ 0, not {lam}")
    n = len(p_unsafe)
    if n < min_candidates:
        return DualStep(
            lam, lam, budget, step, None, None, None, n, "held",
            f"{n} candidates with a harm score, fewer than {min_candidates}: λ held",
        )  # fmt: skip
    est = win_rate_interval([float(p) for p in p_unsafe], list(groups), resamples=2000, seed=seed)
    rate = f"unsafe {est.value:.3f} [{est.low:.3f}, {est.high:.3f}]"
    if est.low > budget or est.high < budget:
        new = max(0.0, lam + step * (est.value - budget))
        moved = "up" if new > lam else ("down" if new < lam else "held")
        side = "over" if est.low > budget else "under"
        reason = f"{rate} is {side} the budget {budget:g}: λ {lam:g} → {new:.3f} (step {step:g})"
        if moved == "held":
            reason += ", already 0"
        return DualStep(lam, new, budget, step, est.value, est.low, est.high, n, moved, reason)
    return DualStep(
        lam, lam, budget, step, est.value, est.low, est.high, n, "held",
        f"{rate} contains the budget {budget:g}: λ held at {lam:g}",
    )  # fmt: skip
