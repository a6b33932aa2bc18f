"""Plain records passed between the Django side and the ML code (no Django, no torch).

A conversation is a list of {"role": "system" | "user" | "assistant", "content": str}
(the shape `annotation.formats.normalise_messages` returns). Helpers here render a
conversation plus a response as the single string every backbone scores, so training,
evaluation and scoring can never disagree on the text format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

PairKind = Literal["strict", "tie", "both_bad"]
PAIR_KINDS: tuple[str, ...] = ("strict", "tie", "both_bad")

# Margin per rating strength 1 / 2 / 3 ("slightly" / "better" / "much better") in the reward
# loss -log sigmoid(r_chosen - r_rejected - margin): the default of the product's reward model
# (reward.RewardConfig.strength_margins) and the margin column of the TRL export (annotation
# exporters), so a RewardTrainer run on an export sees the margins our own trainer uses.
STRENGTH_MARGINS: tuple[float, float, float] = (0.0, 0.5, 1.0)

TEXT_FORMAT = "role-lines-v1"  # render_conversation's format; stored with every trained model

_SPEAKER = {"system": "System", "user": "User", "assistant": "Assistant"}


class TrainingError(Exception):
    """Training cannot start or cannot go on; `str(error)` is a sentence a person can act on."""


class TrainingCancelled(Exception):
    """`should_stop()` returned True between two steps; nothing was written to the output folder."""


def prompt_group(prompt: list[dict]) -> str:
    """Stable identity of a prompt (sha256 of its canonical JSON), used for prompt-disjoint splits."""
    canonical = json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in prompt],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def render_conversation(prompt: list[dict], response: str) -> str:
    """The text a backbone scores: one "Role: content" line per turn, then the judged response.

    >>> render_conversation([{"role": "user", "content": "hi"}], "hello")
    'User: hi\\nAssistant: hello'

    The response comes last on purpose: tokenisation truncates from the left, so a long
    conversation loses its oldest turns and keeps the response being judged.
    """
    lines = [f"{_SPEAKER.get(m['role'], m['role'].title())}: {m['content']}" for m in prompt]
    lines.append(f"Assistant: {response}")
    return "\n".join(lines)


@dataclass(frozen=True)
class PreferencePair:
    """One human (or synthetic) judgement between two responses to the same prompt.

    prompt    the conversation up to the response, a list of {role, content}.
    chosen    the preferred response; for kind "tie" / "both_bad" simply the first response.
    rejected  the other response.
    strength  1 (slightly better) .. 3 (much better), or None when the rater gave none.
    kind      "strict" (chosen beats rejected), "tie" (equally good) or "both_bad".
    pair_id   the caller's id for the pair (e.g. a Preference or Comparison id); reported
              back in RewardResult.train_ids / test_ids.
    group     the prompt identity used for the prompt-disjoint split; when empty it is set to
              `prompt_group(prompt)`, so pairs on the same prompt always land on one side.
    weight    the pair's weight in the training loss (>= 0; 1 by default): a reward run that
              weights votes by trust gives each vote its rater's trust (annotation.quality).
    """

    prompt: list[dict]
    chosen: str
    rejected: str
    strength: int | None = None
    kind: PairKind = "strict"
    pair_id: str = ""
    group: str = field(default="")
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in PAIR_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PAIR_KINDS)}, not {self.kind!r}")
        if self.strength is not None and self.strength not in (1, 2, 3):
            raise ValueError(f"strength must be 1, 2, 3 or None, not {self.strength!r}")
        if not (isinstance(self.weight, int | float) and 0.0 <= self.weight < float("inf")):
            raise ValueError(f"weight must be a finite number >= 0, not {self.weight!r}")
        if not self.group:
            object.__setattr__(self, "group", prompt_group(self.prompt))

    def texts(self) -> tuple[str, str]:
        """(chosen, rejected) rendered with `render_conversation`."""
        return render_conversation(self.prompt, self.chosen), render_conversation(self.prompt, self.rejected)


@dataclass(frozen=True)
class SafetyExample:
    """One response a rater saw, with whether they flagged it unsafe."""

    prompt: list[dict]
    response: str
    unsafe: bool
    group: str = field(default="")  # prompt identity for the split; default prompt_group(prompt)

    def __post_init__(self):
        if not self.group:
            object.__setattr__(self, "group", prompt_group(self.prompt))

    def text(self) -> str:
        return render_conversation(self.prompt, self.response)


@dataclass
class TrainingProgress:
    """Reported through `on_progress` after every optimiser step (and once at step 0).

    step         optimiser steps done so far.
    total_steps  steps planned for the run (max_steps caps it; a time limit may end it early).
    loss         mean training loss of the last step (nan at step 0).
    epoch        fractional epoch, e.g. 0.5 halfway through the first epoch.
    """

    step: int
    total_steps: int
    loss: float
    epoch: float
