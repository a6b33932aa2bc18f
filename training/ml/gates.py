"""Gates: the decisions that promote a reward model or a policy checkpoint, and the guard that
pauses a schedule. Pure functions of numbers, each decision with the numbers behind it. No Django.

- `reward_model_gate`: a candidate reward model is promoted only when its held-out accuracy's
  95 % Wilson interval lies above 0.5 (over at least `min_pairs` pairs) and, when a model is
  active, a paired comparison on the same held-out pairs says it is not worse than the active
  one by more than `margin` (the lower bound of the paired difference's interval, a normal
  interval on the per-pair differences, above −margin: a non-inferiority test).
- `policy_gate`: a round's checkpoint becomes current only when its evaluation passes the
  project's rule: "judge_lower_bound" (the judged win rate against its parent has a 95 %
  interval whose lower bound is at least `threshold`), "human_votes" (a win rate of at least
  `threshold`), or "always" (today's behaviour: no evaluation needed). Either rule waits for at
  least `min_votes` evaluation votes before it decides.
- `overoptimisation`: the proxy reward rose from the previous round while the evaluated win
  rate fell (the upper bound of this round's interval under the previous round's estimate:
  Gao et al. 2022, "Scaling laws for reward model overoptimization"), or KL to the reference
  exceeds the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from training.ml.stats import Z95, Estimate, wilson_interval

POLICY_RULES = ("judge_lower_bound", "human_votes", "always")


@dataclass(frozen=True)
class Decision:
    passed: bool
    reason: str
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The decision fit for a JSON column: NaN and infinities (an estimate over no votes)
        become None, which PostgreSQL's jsonb can hold."""
        return {"passed": self.passed, "reason": self.reason, "numbers": json_safe(self.numbers)}


def json_safe(value):
    """`value` with every non-finite float, however deep in dicts and lists, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def paired_difference(candidate: Sequence[bool], active: Sequence[bool], *, z: float = Z95) -> Estimate:
    """Mean of candidate − active correctness on the same pairs, with a normal interval on the
    per-pair differences (each −1, 0 or +1: the McNemar setting)."""
    n = len(candidate)
    if n != len(active):
        raise ValueError("the two models must be scored on the same pairs")
    if n == 0:
        return Estimate(value=math.nan, low=-1.0, high=1.0, n=0)
    diffs = [int(c) - int(a) for c, a in zip(candidate, active, strict=True)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    half = z * math.sqrt(var / n)
    return Estimate(value=mean, low=mean - half, high=mean + half, n=n)


def reward_model_gate(
    candidate: Sequence[bool],
    active: Sequence[bool] | None = None,
    *,
    margin: float = 0.0,
    min_pairs: int = 50,
) -> Decision:
    """Promote the candidate? `candidate[i]` / `active[i]`: did the model rank held-out pair i right."""
    acc = wilson_interval(sum(map(bool, candidate)), len(candidate))
    numbers: dict = {"accuracy": acc.as_dict(), "min_pairs": min_pairs, "margin": margin}
    if acc.n < min_pairs:
        return Decision(False, f"Not promoted: {acc.n} held-out pairs, at least {min_pairs} needed.", numbers)
    if acc.low <= 0.5:
        return Decision(
            False,
            f"Not promoted: held-out accuracy {acc.value:.3f} [{acc.low:.3f}, {acc.high:.3f}] "
            f"on {acc.n} pairs does not lie above chance (0.5).",
            numbers,
        )
    if active is None:
        return Decision(
            True,
            f"Promoted: held-out accuracy {acc.value:.3f} [{acc.low:.3f}, {acc.high:.3f}] on {acc.n} pairs "
            "lies above chance; no model was active.",
            numbers,
        )
    diff = paired_difference(candidate, active)
    numbers["difference_vs_active"] = diff.as_dict()
    verdict = (
        f"accuracy {acc.value:.3f} vs the active model's {acc.value - diff.value:.3f} on the same {diff.n} pairs "
        f"(difference {diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}], margin {margin:.3f})"
    )
    if diff.low > -margin:
        return Decision(True, f"Promoted: not worse than the active model: {verdict}.", numbers)
    return Decision(False, f"Not promoted: may be worse than the active model: {verdict}.", numbers)


def policy_gate(
    rule: str, win_rate: Estimate | None, *, threshold: float = 0.5, min_votes: int = 50
) -> Decision:
    """Make the round's checkpoint current? `win_rate`: its evaluated win rate against its parent."""
    if rule not in POLICY_RULES:
        raise ValueError(f"unknown policy gate {rule!r}; use one of {', '.join(POLICY_RULES)}")
    numbers = {"rule": rule, "threshold": threshold, "min_votes": min_votes}
    if rule == "always":
        return Decision(True, "Made current without evaluation (gate: always).", numbers)
    if win_rate is None or win_rate.n == 0:
        return Decision(False, "Waiting for evaluation votes.", numbers)
    numbers["win_rate"] = win_rate.as_dict()
    shown = f"win rate {win_rate.value:.3f} [{win_rate.low:.3f}, {win_rate.high:.3f}] over {win_rate.n} votes"
    if win_rate.n < min_votes:
        # Both rules: a bootstrap interval over a few prompts is no interval (rule 12).
        return Decision(False, f"Waiting: {win_rate.n} of {min_votes} evaluation votes.", numbers)
    if rule == "judge_lower_bound":
        if win_rate.low >= threshold:
            return Decision(True, f"Passed: {shown}; lower bound ≥ {threshold:.2f}.", numbers)
        return Decision(False, f"Failed: {shown}; lower bound < {threshold:.2f}.", numbers)
    if win_rate.value >= threshold:
        return Decision(True, f"Passed: {shown} ≥ {threshold:.2f}.", numbers)
    return Decision(False, f"Failed: {shown} < {threshold:.2f}.", numbers)


@dataclass(frozen=True)
class RoundPoint:
    """What the guard reads of one round."""

    proxy_reward: float | None
    win_rate: Estimate | None
    kl: float | None


def overoptimisation(history: Sequence[RoundPoint], *, kl_budget: float | None = None) -> Decision:
    """Pause the schedule? `history`: rounds in order, the newest last. passed=True means "pause"."""
    if not history:
        return Decision(False, "No rounds yet.")
    now = history[-1]
    if kl_budget is not None and now.kl is not None and now.kl > kl_budget:
        return Decision(
            True, f"KL to the reference {now.kl:.3f} exceeds the budget {kl_budget:.3f}.", {"kl": now.kl}
        )
    if len(history) < 2:
        return Decision(False, "One round: nothing to compare yet.")
    before = history[-2]
    if None in (now.proxy_reward, before.proxy_reward) or now.win_rate is None or before.win_rate is None:
        return Decision(False, "Not enough measurements to compare the last two rounds.")
    proxy_up = now.proxy_reward > before.proxy_reward
    judged_down = now.win_rate.high < before.win_rate.value
    numbers = {
        "proxy": [before.proxy_reward, now.proxy_reward],
        "win_rate": [before.win_rate.as_dict(), now.win_rate.as_dict()],
    }
    if proxy_up and judged_down:
        return Decision(
            True,
            f"Over-optimisation: the proxy reward rose ({before.proxy_reward:.3f} → {now.proxy_reward:.3f}) while "
            f"the evaluated win rate fell ({before.win_rate.value:.3f} → {now.win_rate.value:.3f}, "
            f"upper bound {now.win_rate.high:.3f}).",
            numbers,
        )
    return Decision(False, "Proxy reward and evaluation agree.", numbers)
