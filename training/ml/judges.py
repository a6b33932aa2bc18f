"""Judges: programs that vote on comparisons like raters do. No Django.

One small interface, `JudgeBackend.judge(items) -> judgements`, three kinds:

- `RewardModelJudge`: a reward model prefers the response it scores higher; a tie when the
  gap is under `tie_margin`; strength from the gap.
- `ChatJudge`: an OpenAI-compatible chat endpoint (vLLM, TGI, any /v1/chat/completions) asked
  to compare two responses shown in a random order (seeded per item), its answer parsed from
  `[[1]]`, `[[2]]` or `[[tie]]` (the MT-Bench judge format, Zheng et al. 2023), the raw text
  kept with the judgement.
- `SimulatedJudge`: a seeded noisy voter over another backend, for tests and dry runs: it
  agrees with the backend at a set rate, leans to the left side at a set rate, takes a
  log-normal time per vote, or answers at random (a "spammer"). Its model:
  logit P(pick left) = ±a + b, with b = logit(left bias) and a chosen so that the mean
  agreement with the backend over both side assignments is `agreement`. Each item's draw comes
  from a generator seeded with (seed, item key), so the same items get the same votes in any
  order, from any number of processes.

Choices are "a", "b" or "tie", in the comparison's own terms (not screen sides).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from training.ml.records import render_conversation


class JudgeError(Exception):
    """The judge could not give a judgement (endpoint down, unparseable answer)."""


@dataclass(frozen=True)
class JudgeItem:
    prompt: list[dict]
    response_a: str
    response_b: str
    left: str = "a"  # which response the voter sees on the left
    key: int = 0  # a stable id (the comparison's): seeds the simulated voters


@dataclass(frozen=True)
class Judgement:
    choice: str  # "a" | "b" | "tie"
    strength: int | None = None  # 1..3 for a/b
    rationale: str = ""
    raw: str = ""
    seconds: float = 0.0
    scores: tuple[float, float] | None = None


class JudgeBackend(Protocol):
    name: str

    def judge(self, items: Sequence[JudgeItem]) -> list[Judgement]: ...


def strength_from_gap(gap: float, thresholds: tuple[float, float, float]) -> tuple[str, int | None]:
    """(choice, strength) from a score gap a − b: a tie under the first threshold."""
    tie, clear, strong = thresholds
    size = abs(gap)
    if size < tie:
        return "tie", None
    return ("a" if gap > 0 else "b"), 3 if size >= strong else 2 if size >= clear else 1


@dataclass
class RewardModelJudge:
    """Prefers the higher reward. `scorer` has `.score(prompts, responses) -> list[float]`
    (training.ml.reward.RewardScorer)."""

    scorer: object
    thresholds: tuple[float, float, float] = (0.1, 0.5, 1.5)
    name: str = "reward_model"

    def judge(self, items: Sequence[JudgeItem]) -> list[Judgement]:
        started = time.perf_counter()
        prompts = [i.prompt for i in items for _ in (0, 1)]
        responses = [r for i in items for r in (i.response_a, i.response_b)]
        scores = self.scorer.score(prompts, responses)
        each = (time.perf_counter() - started) / max(1, len(items))
        out = []
        for n, _item in enumerate(items):
            a, b = scores[2 * n], scores[2 * n + 1]
            choice, strength = strength_from_gap(a - b, self.thresholds)
            out.append(
                Judgement(
                    choice=choice, strength=strength, seconds=each, scores=(a, b), raw=f"{a:.4f} {b:.4f}"
                )
            )
        return out


CHAT_TEMPLATE = """Please act as an impartial judge and evaluate the two AI assistant responses to the \
conversation below. Prefer the response that is more helpful, honest and harmless. Do not let the \
order of the responses, their length or the assistants' names influence you. Explain briefly, then \
give your verdict on the last line as exactly one of: [[1]] if response 1 is better, [[2]] if \
response 2 is better, [[tie]] for a tie.

[Conversation]
{conversation}

[Response 1]
{first}

[Response 2]
{second}"""
_VERDICT = re.compile(r"\[\[(1|2|tie)\]\]", re.IGNORECASE)


@dataclass
class ChatJudge:
    """An LLM judge behind an OpenAI-compatible chat endpoint."""

    base_url: str
    model: str
    api_key: str = ""
    template: str = CHAT_TEMPLATE
    seed: int = 0
    timeout_s: float = 120.0
    max_tokens: int = 512
    name: str = "chat"
    client: object = field(default=None, repr=False)

    def _order(self, item: JudgeItem) -> bool:
        """True when response A is shown first (random per item, seeded)."""
        return bool(np.random.default_rng([self.seed, item.key]).integers(0, 2))

    def _ask(self, text: str) -> str:
        import httpx

        client = self.client or httpx.Client(timeout=self.timeout_s)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        try:
            response = client.post(
                f"{self.base_url.rstrip('/')}/chat/completions", json=body, headers=headers
            )
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"] or ""
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise JudgeError(f"The judge endpoint did not answer: {exc}") from exc
        finally:
            if self.client is None:
                client.close()

    def judge(self, items: Sequence[JudgeItem]) -> list[Judgement]:
        out = []
        for item in items:
            a_first = self._order(item)
            first, second = (
                (item.response_a, item.response_b) if a_first else (item.response_b, item.response_a)
            )
            conversation = render_conversation(item.prompt, "").rsplit("\n", 1)[0]  # without the empty reply
            started = time.perf_counter()
            raw = self._ask(self.template.format(conversation=conversation, first=first, second=second))
            verdicts = _VERDICT.findall(raw)
            if not verdicts:
                raise JudgeError(f"No [[1]], [[2]] or [[tie]] in the judge's answer: {raw[-200:]!r}")
            verdict = verdicts[-1].lower()
            if verdict == "tie":
                choice = "tie"
            else:
                choice = "a" if (verdict == "1") == a_first else "b"
            out.append(
                Judgement(
                    choice=choice,
                    strength=None if choice == "tie" else 2,
                    rationale=raw.strip()[:5000],
                    raw=raw,
                    seconds=time.perf_counter() - started,
                )
            )
        return out


def _agreement_logit(agreement: float, bias: float) -> float:
    """a with (σ(a + b) + σ(a − b)) / 2 = agreement (bisection; monotone in a)."""
    low, high = -20.0, 20.0
    for _ in range(100):
        mid = (low + high) / 2
        mean = (1 / (1 + math.exp(-(mid + bias))) + 1 / (1 + math.exp(-(mid - bias)))) / 2
        low, high = (mid, high) if mean < agreement else (low, mid)
    return (low + high) / 2


@dataclass
class SimulatedJudge:
    """A seeded noisy voter over `backend` (see the module docstring)."""

    backend: JudgeBackend
    agreement: float = 0.75
    left_bias: float = 0.55
    spammer: bool = False
    seconds_median: float = 12.0
    seconds_sigma: float = 0.5
    seed: int = 0
    name: str = "simulated"

    def __post_init__(self) -> None:
        if not 0.5 <= self.agreement < 1.0 or not 0.0 < self.left_bias < 1.0:
            raise ValueError("agreement must be in [0.5, 1) and left_bias in (0, 1)")
        self._bias = math.log(self.left_bias / (1 - self.left_bias))
        self._a = _agreement_logit(self.agreement, self._bias)

    def _vote(self, item: JudgeItem, truth: Judgement) -> Judgement:
        rng = np.random.default_rng([self.seed, item.key])
        seconds = float(self.seconds_median * math.exp(self.seconds_sigma * rng.standard_normal()))
        right = "b" if item.left == "a" else "a"
        if self.spammer:
            return Judgement(choice=item.left if rng.random() < 0.5 else right, strength=1, seconds=seconds)
        if truth.choice == "tie":
            p_left = self.left_bias
        else:
            sign = 1.0 if truth.choice == item.left else -1.0
            p_left = 1 / (1 + math.exp(-(sign * self._a + self._bias)))
        choice = item.left if rng.random() < p_left else right
        strength = truth.strength if choice == truth.choice else 1
        return Judgement(choice=choice, strength=strength or 1, seconds=seconds, scores=truth.scores)

    def judge(self, items: Sequence[JudgeItem]) -> list[Judgement]:
        truths = [Judgement(choice="tie")] * len(items) if self.spammer else self.backend.judge(items)
        return [self._vote(item, truth) for item, truth in zip(items, truths, strict=True)]
