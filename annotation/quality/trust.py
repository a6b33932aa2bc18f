"""A rater's trust: the posterior probability that they are a careful rater. Pure Python.

The model is a small Bayesian classifier over rater *types*, in the spirit of Raykar & Yu
(2012, "Eliciting annotator reliability: ranking annotators for crowdsourced labeling tasks",
JMLR 13) and the rater-confusion model of Dawid & Skene (1979), reduced to the failure modes a
preference queue sees:

    careful       agrees with gold and with the others, reads, picks either side
    random        a coin on gold and agreement
    left / right  picks one screen side whatever the texts
    too fast      answers faster than the text can be read, a little better than a coin

Each type fixes four rates: gold accuracy, agreement with the leave-one-out majority, share of
votes faster than the reading-time model, and share of left picks. A rater's evidence is four
counts (k of n); under the naive-Bayes assumption each type's log-likelihood is a sum of
binomial terms, so the log-odds of every type are LINEAR in the counts with weights
log(p/q) and log((1−p)/(1−q)): a logistic combination whose weights are fixed log-likelihood
ratios rather than fitted (Ng & Jordan 2002 on naive Bayes ↔ logistic regression).
trust = P(careful | evidence). Accumulating log-likelihood ratios vote by vote is Wald's
sequential probability ratio test, which is why a clear spammer is flagged after a few dozen
votes and a careful rater's trust only grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RaterType:
    name: str
    prior: float
    gold: float  # P(gold vote right)
    agree: float  # P(vote = leave-one-out majority)
    fast: float  # P(vote faster than the reading-time model allows)
    left: float  # P(left pick | an A/B vote)


DEFAULT_TYPES: tuple[RaterType, ...] = (
    RaterType("careful", prior=0.80, gold=0.85, agree=0.80, fast=0.05, left=0.5),
    RaterType("random", prior=0.05, gold=0.50, agree=0.50, fast=0.05, left=0.5),
    RaterType("left", prior=0.05, gold=0.50, agree=0.50, fast=0.05, left=0.9),
    RaterType("right", prior=0.05, gold=0.50, agree=0.50, fast=0.05, left=0.1),
    RaterType("too_fast", prior=0.05, gold=0.60, agree=0.60, fast=0.70, left=0.5),
)


@dataclass(frozen=True)
class Evidence:
    """Counts behind a rater's trust: k of n for each signal."""

    gold_right: int = 0
    gold_n: int = 0
    agree: int = 0
    agree_n: int = 0
    fast: int = 0
    timed_n: int = 0
    left: int = 0
    sided_n: int = 0


@dataclass(frozen=True)
class Trust:
    value: float  # P(careful | evidence)
    likeliest: str  # the most probable type
    posterior: dict = field(default_factory=dict)


def _loglik(k: int, n: int, p: float) -> float:
    return k * math.log(p) + (n - k) * math.log(1 - p)


def trust_score(evidence: Evidence, types: tuple[RaterType, ...] = DEFAULT_TYPES) -> Trust:
    """The posterior over rater types given the evidence; trust is the first type's share."""
    e = evidence
    logs = [
        math.log(t.prior)
        + _loglik(e.gold_right, e.gold_n, t.gold)
        + _loglik(e.agree, e.agree_n, t.agree)
        + _loglik(e.fast, e.timed_n, t.fast)
        + _loglik(e.left, e.sided_n, t.left)
        for t in types
    ]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    posterior = {t.name: w / total for t, w in zip(types, weights, strict=True)}
    likeliest = max(posterior, key=posterior.get)
    return Trust(value=posterior[types[0].name], likeliest=likeliest, posterior=posterior)


ACTIVE, REVIEW, PAUSED = "active", "review", "paused"
STATES = (ACTIVE, REVIEW, PAUSED)


@dataclass(frozen=True)
class Thresholds:
    review_below: float = 0.5  # trust under this: under review (still rating)
    pause_below: float = 0.05  # trust under this: paused (no new pairs)
    min_votes: int = 10  # no automatic change before this many votes


def state_decide(*, trust: float, votes: int, current: str, thresholds: Thresholds) -> str:
    """The automatic state: paused is sticky (only ops lift it); before `min_votes` votes a
    rater keeps their state; otherwise by the thresholds."""
    if current == PAUSED or votes < thresholds.min_votes:
        return current
    if trust < thresholds.pause_below:
        return PAUSED
    if trust < thresholds.review_below:
        return REVIEW
    return ACTIVE
