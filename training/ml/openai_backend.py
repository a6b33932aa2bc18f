"""The generation backend for any server speaking the OpenAI chat-completions protocol (vLLM, TGI,
llama.cpp server, ...), for generation at scale. No Django, no torch; training.ml.generation
re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from training.ml.candidates import Candidate, GenerationBackend, GenerationError
from training.ml.policy import GenerationParams

__all__ = ["OpenAICompatibleBackend"]


class OpenAICompatibleBackend(GenerationBackend):
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

    def _steps(self, prompts: list[list[dict]], params: GenerationParams) -> list[range]:
        # Requests go out in waves of max_concurrency, so should_stop is honoured between waves.
        size = self.max_concurrency
        return [range(start, min(start + size, len(prompts))) for start in range(0, len(prompts), size)]

    def _session(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.max_concurrency)

    def _run_step(self, session, step, number, prompts, params) -> Iterator[tuple[int, list[Candidate]]]:
        futures = {i: session.submit(self._request, i, prompts[i], params) for i in step}
        for i, future in futures.items():
            yield i, future.result()
