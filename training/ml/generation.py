"""Candidate generation for a round, behind one small interface. No Django.

    backend.generate(prompts, params) -> one list of `params.n` Candidates per prompt

Two backends:
- `LocalTransformersBackend`: the policy folder loaded once in this process; prompts rendered
  with the tokenizer's chat template, left-padded batches, `model.generate` sampling several
  candidates per prompt. Each candidate carries the sum of its tokens' log-probabilities under
  the policy, recorded during generation (no extra forward pass), for a KL estimate against the
  reference policy.
- `OpenAICompatibleBackend`: any server speaking the OpenAI chat-completions protocol
  (vLLM, TGI, llama.cpp server, ...), for generation at scale.

`sequence_logprobs` scores given responses under any causal LM (policy or reference):
the per-sample KL estimate of a round is mean(logp_policy - logp_ref) over its candidates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from training.ml.policy import GenerationParams, load_policy
from training.ml.records import TrainingCancelled

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


class GenerationBackend(Protocol):
    def generate(
        self,
        prompts: list[list[dict]],
        params: GenerationParams,
        *,
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ) -> list[list[Candidate]]:
        """`params.n` candidates for each prompt (a conversation of {role, content}), in prompt order."""
        ...


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The conversation as the policy sees it, ending with the assistant turn's header."""
    if not messages:
        raise GenerationError("a prompt needs at least one message")
    return tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        add_generation_prompt=True,
        tokenize=False,
    )


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


class LocalTransformersBackend:
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

    def generate(
        self,
        prompts: list[list[dict]],
        params: GenerationParams,
        *,
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ) -> list[list[Candidate]]:
        results: list[list[Candidate] | None] = [None] * len(prompts)
        batches = self.prepare_batches(prompts, params)
        done = 0
        if on_progress:
            on_progress(GenerationProgress(prompts_done=0, prompts_total=len(prompts)))
        for number, batch in enumerate(batches):
            if should_stop and should_stop():
                raise GenerationCancelled(f"generation cancelled after {done} of {len(prompts)} prompts")
            seed = None if params.seed is None else params.seed + number
            for prompt_index, group in zip(
                batch.prompt_indices, self.generate_batch(batch, params, seed=seed), strict=True
            ):
                results[prompt_index] = group
            done += len(batch.prompt_indices)
            if on_progress:
                on_progress(GenerationProgress(prompts_done=done, prompts_total=len(prompts)))
        return [group or [] for group in results]


# --------------------------------------------------------------------------------------------
# OpenAI-compatible server backend


class OpenAICompatibleBackend:
    """Generates through `POST {base_url}/v1/chat/completions` (vLLM, TGI, llama.cpp server, ...).

    One request per prompt asks for `n` choices; up to `max_concurrency` requests run at once
    (such servers batch concurrent requests themselves). Token log-probabilities are asked for
    (`logprobs: true`); servers that return them give each candidate its `logprob_sum` and an
    exact `num_tokens`, otherwise `logprob_sum` is None and `num_tokens` is the server's
    completion-token count divided among the choices.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        *,
        max_concurrency: int = 8,
        request_logprobs: bool = True,
        transport=None,
    ):
        import httpx

        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.url = f"{base}/v1/chat/completions"
        self.model = model
        self.max_concurrency = max(1, max_concurrency)
        self.request_logprobs = request_logprobs
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _payload(self, messages: list[dict], params: GenerationParams) -> dict:
        payload = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if self.request_logprobs:
            payload["logprobs"] = True
        return payload

    def _request(self, prompt_index: int, messages: list[dict], params: GenerationParams) -> list[Candidate]:
        import httpx

        try:
            response = self._client.post(self.url, json=self._payload(messages, params))
        except httpx.HTTPError as exc:
            raise GenerationError(f"request to {self.url} failed: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code != 200:
            body = response.text[:300]
            raise GenerationError(
                f"{self.url} answered HTTP {response.status_code} for prompt {prompt_index}: {body}"
            )
        try:
            data = response.json()
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise GenerationError(
                f"{self.url} returned no readable choices for prompt {prompt_index}"
            ) from exc
        if len(choices) != params.n:
            raise GenerationError(
                f"{self.url} returned {len(choices)} choices for prompt {prompt_index}, expected {params.n}"
            )
        completion_tokens = (data.get("usage") or {}).get("completion_tokens") or 0
        recorded = params.as_dict()
        candidates = []
        for choice in choices:
            try:
                text = choice["message"]["content"] or ""
            except (KeyError, TypeError) as exc:
                raise GenerationError(f"{self.url} returned a choice without message content") from exc
            token_logprobs = ((choice.get("logprobs") or {}).get("content")) or None
            if token_logprobs:
                num_tokens = len(token_logprobs)
                logprob_sum = float(sum(t["logprob"] for t in token_logprobs))
            else:
                num_tokens = round(completion_tokens / params.n)
                logprob_sum = None
            candidates.append(
                Candidate(
                    prompt_index=prompt_index,
                    text=str(text).strip(),
                    num_tokens=int(num_tokens),
                    logprob_sum=logprob_sum,
                    params=recorded,
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                )
            )
        return candidates

    def generate(
        self,
        prompts: list[list[dict]],
        params: GenerationParams,
        *,
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
    ) -> list[list[Candidate]]:
        results: list[list[Candidate]] = [[] for _ in prompts]
        if on_progress:
            on_progress(GenerationProgress(prompts_done=0, prompts_total=len(prompts)))
        # Requests go out in waves of max_concurrency, so should_stop is honoured between waves.
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            for start in range(0, len(prompts), self.max_concurrency):
                if should_stop and should_stop():
                    raise GenerationCancelled(f"generation cancelled after {start} of {len(prompts)} prompts")
                wave = range(start, min(start + self.max_concurrency, len(prompts)))
                futures = {i: pool.submit(self._request, i, prompts[i], params) for i in wave}
                for i, future in futures.items():
                    results[i] = future.result()
                if on_progress:
                    on_progress(GenerationProgress(prompts_done=wave.stop, prompts_total=len(prompts)))
        return results


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
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (ids, _) in enumerate(chunk):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            attention[r, : len(ids)] = 1
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
