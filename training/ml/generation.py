"""Candidate generation for a round, behind one small interface (training.ml.candidates). No Django.

    backend.generate(prompts, params) -> one list of `params.n` Candidates per prompt

Two backends:
- `LocalTransformersBackend` (here): the policy folder loaded once in this process; prompts
  rendered with the tokenizer's chat template, left-padded batches, `model.generate` sampling
  several candidates per prompt. Each candidate carries the sum of its tokens'
  log-probabilities under the policy, recorded during generation (no extra forward pass), for a
  KL estimate against the reference policy.
- `OpenAICompatibleBackend` (training.ml.openai_backend, re-exported here): any server speaking
  the OpenAI chat-completions protocol (vLLM, TGI, llama.cpp server, ...), for generation at scale.

`sequence_logprobs` scores given responses under any causal LM (policy or reference):
the per-sample KL estimate of a round is mean(logp_policy - logp_ref) over its candidates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from training.ml import backbones
from training.ml.candidates import (
    Candidate,
    GenerationBackend,
    GenerationCancelled,
    GenerationError,
    GenerationProgress,
    render_prompt,
)
from training.ml.openai_backend import OpenAICompatibleBackend
from training.ml.policy import GenerationParams, load_policy

__all__ = [
    "Candidate",
    "GenerationBackend",
    "GenerationCancelled",
    "GenerationError",
    "GenerationParams",
    "GenerationProgress",
    "LocalTransformersBackend",
    "OpenAICompatibleBackend",
    "PromptBatch",
    "render_prompt",
    "estimate_kl",
    "sequence_logprobs",
]


# --------------------------------------------------------------------------------------------
# Local transformers backend


class _LogprobRecorder(LogitsProcessor):
    """Records log p(token) under the unmodified policy while `generate` samples.

    transformers applies custom logits processors before the sampling warpers (temperature,
    top-p), so the scores seen here are the model's raw next-token logits. Each call keeps
    that step's log-softmax (one batch x vocab tensor) and, once the token it produced has been
    appended to `input_ids`, gathers that token's log-probability. Memory stays at one step,
    where `output_logits=True` would keep every step's full logits (~400 MB for 32 x 64 x 49k).
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def token_logprobs(self, generated: torch.Tensor) -> torch.Tensor:
        """(rows, generated_len) log-probs of `generated`, the tokens generate appended."""
        length = generated.shape[1]
        steps = list(self.steps)
        if len(steps) < length and self.previous is not None:
            steps.append(self.previous.gather(1, generated[:, -1:]).squeeze(1))
        if len(steps) < length:
            raise GenerationError("log-probabilities were not recorded for every generated token")
        return torch.stack(steps[:length], dim=1)


@dataclass
class PromptBatch:
    """Prompts generated together: their indices and their left-padded encoding."""

    prompt_indices: list[int]
    inputs: dict  # input_ids, attention_mask

    def __len__(self) -> int:
        return len(self.prompt_indices)


class LocalTransformersBackend(GenerationBackend):
    """Generates with a policy folder loaded once into this process (CPU or one GPU).

    batch_size   sequences per `model.generate` call (prompts x n); whole prompts are kept
                 together, so a batch holds max(1, batch_size // n) prompts. Prompts are
                 grouped by length to keep padding short.
    threads      torch intra-op threads (None: torch's default).

    Candidates are sampled with `num_return_sequences=n` (transformers repeats each prompt n
    times, so this is the same computation as repeating the prompts ourselves; bench/
    round_generation.py measures both). With a seed, batch k is sampled under seed + k in a
    forked RNG, so results repeat for the same prompts, params and batch size, and the global
    torch RNG is left alone.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        batch_size: int = 8,
        threads: int | None = None,
        model=None,
        tokenizer=None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if model is None:
            if model_dir is None:
                raise ValueError("give model_dir or an already loaded model and tokenizer")
            model, tokenizer = load_policy(model_dir, threads=threads)
        elif tokenizer is None:
            raise ValueError("a model given in memory needs its tokenizer")
        elif threads:
            torch.set_num_threads(threads)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._eos_ids = self._end_token_ids()

    def _end_token_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {int(i) for i in ids if i is not None}

    # The three steps below are public so bench/round_generation.py can time plain
    # `model.generate` on exactly the batches and settings the backend uses.

    def prepare_batches(self, prompts: list[list[dict]], params: GenerationParams) -> list[PromptBatch]:
        """Render and tokenise every prompt once; group them into left-padded batches."""
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
        per_batch = max(1, self.batch_size // params.n)
        batches = []
        for start in range(0, len(order), per_batch):
            chosen = order[start : start + per_batch]
            encoded = self.tokenizer.pad(
                {"input_ids": [ids[i] for i in chosen]}, padding=True, return_tensors="pt"
            )
            batches.append(PromptBatch(prompt_indices=chosen, inputs=dict(encoded)))
        return batches

    def generate_kwargs(self, params: GenerationParams) -> dict:
        """The keyword arguments given to `model.generate` for these params."""
        kwargs = {
            "max_new_tokens": params.max_new_tokens,
            "num_return_sequences": params.n,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self._eos_ids),
        }
        if params.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        return kwargs

    def generate_batch(self, batch: PromptBatch, params: GenerationParams, *, seed: int | None = None):
        """Candidates for one batch, grouped per prompt in the batch's order."""
        recorder = _LogprobRecorder()
        inputs = {name: tensor.to(self.model.device) for name, tensor in batch.inputs.items()}
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        with rng, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(
                **inputs,
                **self.generate_kwargs(params),
                logits_processor=LogitsProcessorList([recorder]),
            )
        prompt_len = inputs["input_ids"].shape[1]
        generated = out[:, prompt_len:]
        logprobs = recorder.token_logprobs(generated)

        # Tokens up to and including the first end-of-turn token count; the rest is padding.
        is_end = torch.zeros_like(generated, dtype=torch.bool)
        for eos in self._eos_ids:
            is_end |= generated == eos
        ended_before = (is_end.long().cumsum(dim=1) - is_end.long()) > 0
        keep = ~ended_before
        num_tokens = keep.sum(dim=1).tolist()
        sums = (logprobs * keep).sum(dim=1).tolist()
        stopped = is_end.any(dim=1).tolist()
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)

        recorded = params.as_dict()
        groups: list[list[Candidate]] = []
        for j, prompt_index in enumerate(batch.prompt_indices):
            group = []
            for k in range(params.n):
                row = j * params.n + k
                group.append(
                    Candidate(
                        prompt_index=prompt_index,
                        text=texts[row].strip(),
                        num_tokens=int(num_tokens[row]),
                        logprob_sum=float(sums[row]),
                        params=recorded,
                        finish_reason="stop" if stopped[row] else "length",
                    )
                )
            groups.append(group)
        return groups

    def _steps(self, prompts: list[list[dict]], params: GenerationParams) -> list[PromptBatch]:
        return self.prepare_batches(prompts, params)

    def _run_step(self, session, step, number, prompts, params) -> Iterable[tuple[int, list[Candidate]]]:
        seed = None if params.seed is None else params.seed + number
        return zip(step.prompt_indices, self.generate_batch(step, params, seed=seed), strict=True)


# --------------------------------------------------------------------------------------------
# Scoring given responses


@torch.inference_mode()
def sequence_logprobs(
    model_dir_or_model,
    tokenizer,
    prompts: Sequence[list[dict]],
    responses: Sequence[str],
    *,
    add_eos: bool | Sequence[bool] = True,
    batch_size: int = 8,
) -> list[float]:
    """log p(response | prompt) under a causal LM: the sum over the response's tokens.

    The prompt is rendered with the chat template (ending with the assistant header), the
    response tokenised without special tokens and, where `add_eos` says so (one flag for all or
    one per response, e.g. `[c.finish_reason == "stop" for c in candidates]`), followed by the
    end-of-turn token, as the policy generates it. `model_dir_or_model` is a folder (loaded
    here; `tokenizer` may then be None) or a loaded model. Rows are right-padded, so position
    ids need no adjusting.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if isinstance(model_dir_or_model, str | Path):
        model, loaded_tokenizer = load_policy(model_dir_or_model)
        tokenizer = tokenizer or loaded_tokenizer
    else:
        model = model_dir_or_model
        if tokenizer is None:
            raise ValueError("a model given in memory needs its tokenizer")
    flags = [add_eos] * len(responses) if isinstance(add_eos, bool) else list(add_eos)
    if len(flags) != len(responses):
        raise ValueError("add_eos needs one flag per response")

    rows: list[tuple[list[int], int]] = []  # (token ids, index where the response starts)
    for messages, response, eos in zip(prompts, responses, flags, strict=True):
        prompt_ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        if eos:
            response_ids = response_ids + [tokenizer.eos_token_id]
        rows.append((prompt_ids + response_ids, len(prompt_ids)))

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    totals: list[float] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        input_ids, attention = backbones.pad([ids for ids, _ in chunk], pad)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        for r, (ids, response_start) in enumerate(chunk):
            if response_start >= len(ids):
                totals.append(0.0)
                continue
            # logits at position t predict token t + 1
            step_logits = logits[r, response_start - 1 : len(ids) - 1].float()
            targets = input_ids[r, response_start : len(ids)].to(device)
            logp = torch.log_softmax(step_logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
            totals.append(float(logp.sum()))
    return totals


def estimate_kl(
    policy,
    reference,
    tokenizer,
    prompts: Sequence[list[dict]],
    candidates: Sequence[Candidate],
    *,
    batch_size: int = 8,
) -> float:
    """Monte-Carlo estimate of KL(policy || reference) per response, in nats.

    The mean over `candidates` (sampled from the policy, each pointing at its prompt in
    `prompts`) of log p_policy(y|x) - log p_reference(y|x). Both terms are scored here with
    `sequence_logprobs` on the same (re-tokenised) text, so tokenisation differences cancel;
    `policy` and `reference` are folders or loaded models sharing `tokenizer`. On a finite
    sample the estimate can come out slightly negative.
    """
    if not candidates:
        raise ValueError("no candidates to estimate the KL divergence on")
    batch_prompts = [prompts[c.prompt_index] for c in candidates]
    texts = [c.text for c in candidates]
    eos = [c.finish_reason == "stop" for c in candidates]
    logp_policy = sequence_logprobs(
        policy, tokenizer, batch_prompts, texts, add_eos=eos, batch_size=batch_size
    )
    logp_ref = sequence_logprobs(
        reference, tokenizer, batch_prompts, texts, add_eos=eos, batch_size=batch_size
    )
    return sum(p - r for p, r in zip(logp_policy, logp_ref, strict=True)) / len(candidates)
