"""λ from an unsafe budget (training.ml.safety_budget): Safe RLHF's dual step, moved only when
the unsafe rate's interval is clear of the budget."""

from __future__ import annotations

import pytest

from training.ml.safety_budget import MIN_CANDIDATES, dual_step


def _rates(values_per_prompt: list[list[float]]):
    p = [v for vs in values_per_prompt for v in vs]
    g = [i for i, vs in enumerate(values_per_prompt) for _ in vs]
    return p, g


def test_lambda_rises_by_the_step_times_the_excess_when_the_rate_is_clearly_over_the_budget():
    p, g = _rates([[0.6, 0.6, 0.6, 0.6]] * 8)
    s = dual_step(lam=1.0, p_unsafe=p, groups=g, budget=0.1, step=5.0)
    assert s.moved == "up" and s.lam == pytest.approx(1.0 + 5.0 * 0.5) and s.lam_before == 1.0
    assert s.low > 0.1 and s.n == 32 and "over the budget" in s.reason


def test_lambda_falls_but_never_below_zero_when_the_rate_is_clearly_under_the_budget():
    p, g = _rates([[0.0, 0.02, 0.0, 0.01]] * 8)
    s = dual_step(lam=3.0, p_unsafe=p, groups=g, budget=0.2, step=5.0)
    assert s.moved == "down" and s.lam == pytest.approx(3.0 + 5.0 * (sum(p) / len(p) - 0.2))
    floor = dual_step(lam=0.25, p_unsafe=p, groups=g, budget=0.2, step=5.0)
    assert floor.lam == 0.0 and floor.moved == "down"
    zero = dual_step(lam=0.0, p_unsafe=p, groups=g, budget=0.2, step=5.0)
    assert zero.lam == 0.0 and zero.moved == "held" and "already 0" in zero.reason


def test_lambda_is_held_when_the_interval_contains_the_budget_or_there_are_too_few_candidates():
    # Half the prompts all unsafe, half all safe: mean 0.5, a wide interval over prompts.
    p, g = _rates([[1.0, 1.0], [0.0, 0.0]] * 6)
    s = dual_step(lam=1.0, p_unsafe=p, groups=g, budget=0.45, step=5.0)
    assert s.low < 0.45 < s.high and s.moved == "held" and s.lam == 1.0 and "contains" in s.reason
    few_p, few_g = _rates([[0.9]] * (MIN_CANDIDATES - 1))
    few = dual_step(lam=1.0, p_unsafe=few_p, groups=few_g, budget=0.1, step=5.0)
    assert few.moved == "held" and few.lam == 1.0 and few.unsafe is None and "fewer than" in few.reason


def test_the_interval_is_over_prompts_not_candidates():
    """Forty candidates that are 10 copies of 4 prompts' verdicts are four prompts' evidence: the
    same mean that moves λ with independent prompts does not move it here."""
    clustered_p, clustered_g = _rates([[1.0] * 10, [0.0] * 10, [0.0] * 10, [0.0] * 10])
    s = dual_step(lam=1.0, p_unsafe=clustered_p, groups=clustered_g, budget=0.05, step=5.0)
    assert s.moved == "held", s.reason


@pytest.mark.parametrize(
    "kwargs",
    [{"budget": 1.5}, {"budget": -0.1}, {"step": 0.0}, {"lam": -1.0}],
)
def test_nonsense_is_refused(kwargs):
    p, g = _rates([[0.5] * 4] * 8)
    args = {"lam": 1.0, "p_unsafe": p, "groups": g, "budget": 0.1, "step": 5.0, **kwargs}
    with pytest.raises(ValueError):
        dual_step(**args)
