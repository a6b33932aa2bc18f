"""What every generation backend takes and returns: the interface of training.ml.generation.
No Django, no torch.

    backend.generate(prompts, params) -> one list of `params.n` Candidates per prompt
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from training.ml.policy import GenerationParams
from training.ml.records import TrainingCancelled

FinishReason = Literal["stop", "length"]


class GenerationError(Exception):
    """Generation failed (server error, bad response, bad input); `str(error)` says what and where."""


class GenerationCancelled(TrainingCancelled):
    """`should_stop()` returned True between two batches; the candidates so far are discarded."""


@dataclass(frozen=True)
class Candidate:
    """One generated response.

    prompt_index   index of its prompt in the `prompts` list given to `generate`.
    text           the response text (special tokens removed). Untrusted model output.
    num_tokens     generated tokens, the end-of-turn token included when generation stopped on it.
    logprob_sum    sum of the generated tokens' log-probabilities under the policy at
                   temperature 1 (what a KL estimate needs, whatever the sampling temperature);
                   None when the backend cannot tell.
    params         `GenerationParams.as_dict()` of the call that produced it.
    finish_reason  "stop" (end-of-turn token) or "length" (hit max_new_tokens).
    """

    prompt_index: int
    text: str
    num_tokens: int
    logprob_sum: float | None
    params: dict = field(default_factory=dict)
    finish_reason: FinishReason = "stop"


@dataclass(frozen=True)
class GenerationProgress:
    """Reported through `on_progress` after each batch (and once before the first)."""

    prompts_done: int
    prompts_total: int


ProgressFn = Callable[[GenerationProgress], None]
StopFn = Callable[[], bool]


class GenerationBackend:
    """The interface: `generate`. A backend works through the prompts in steps (a batch of
    prompts, a wave of requests), so progress and `should_stop` fall between steps; it says
    what its steps are (`_steps`: each a sized collection of prompt indices) and how one runs
    (`_run_step`), optionally inside a `_session` held for the whole call."""

    def generate(
        self,
        prompts: list[list[dict]],
        params: GenerationParams,
        *,
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ) -> list[list[Candidate]]:
        """`params.n` candidates for each prompt (a conversation of {role, content}), in prompt order."""
        results: list[list[Candidate]] = [[] for _ in prompts]
        steps = self._steps(prompts, params)
        with self._session() as session:
            for number, step in enumerate(
                progress_steps(steps, len, len(prompts), on_progress=on_progress, should_stop=should_stop)
            ):
                for prompt_index, group in self._run_step(session, step, number, prompts, params):
                    results[prompt_index] = group
        return results

    def _steps(self, prompts: list[list[dict]], params: GenerationParams) -> Sequence[Sized]:
        raise NotImplementedError

    def _session(self) -> AbstractContextManager:
        return nullcontext()

    def _run_step(
        self, session, step, number: int, prompts: list[list[dict]], params: GenerationParams
    ) -> Iterable[tuple[int, list[Candidate]]]:
        """(prompt index, its candidates) for every prompt of step number `number`."""
        raise NotImplementedError


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The conversation as the policy sees it, ending with the assistant turn's header."""
    if not messages:
        raise GenerationError("a prompt needs at least one message")
    return tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        add_generation_prompt=True,
        tokenize=False,
    )


Step = TypeVar("Step")


def progress_steps(
    steps: Iterable[Step],
    size: Callable[[Step], int],
    total: int,
    *,
    on_progress: ProgressFn | None,
    should_stop: StopFn | None,
) -> Iterator[Step]:
    """The steps of one `generate` call (batches, waves of requests), each `size(step)` prompts
    of `total`, with the reporting every backend owes its caller: progress 0 first,
    `should_stop` polled before each step (GenerationCancelled), progress after each."""
    done = 0
    if on_progress:
        on_progress(GenerationProgress(prompts_done=0, prompts_total=total))
    for step in steps:
        if should_stop and should_stop():
            raise GenerationCancelled(f"generation cancelled after {done} of {total} prompts")
        yield step
        done += size(step)
        if on_progress:
            on_progress(GenerationProgress(prompts_done=done, prompts_total=total))
