"""The generation backend of a round's generating and publishing steps, and how a pass is cut
into generate calls.

The HTTP server when GENERATION_BACKEND_URL is set, else the policy's folder loaded with
transformers: one model kept per worker process (`backend_cache_clear` frees it, e.g. before
the policy update trains).
"""

from __future__ import annotations

from django.conf import settings

from training.models import PolicyCheckpoint, RLHFRound, RoundCandidate
from training.services.policies import policy_dir_verified
from training.services.rounds.progress import RoundStepError

HTTP_PROMPTS_PER_CHUNK = 8

_backend_cache: dict = {}


def http_backend_configured() -> bool:
    return bool(settings.GENERATION_BACKEND_URL)


def generation_backend(policy: PolicyCheckpoint | None):
    """(backend, name): "openai" for the HTTP server, "transformers" for the local model."""
    if http_backend_configured():
        from training.ml.generation import OpenAICompatibleBackend

        if not settings.GENERATION_MODEL:
            raise RoundStepError("GENERATION_BACKEND_URL is set but GENERATION_MODEL is empty.")
        return (
            OpenAICompatibleBackend(
                settings.GENERATION_BACKEND_URL,
                settings.GENERATION_MODEL,
                api_key=settings.GENERATION_API_KEY or None,
            ),
            "openai",
        )
    from training.ml.generation import LocalTransformersBackend

    path = policy_dir_verified(policy)
    key = (str(path), policy.sha256)
    backend = _backend_cache.get(key)
    if backend is None:
        _backend_cache.clear()  # one policy in memory at a time
        backend = LocalTransformersBackend(path, batch_size=settings.GENERATION_BATCH_SIZE)
        _backend_cache[key] = backend
    return backend, "transformers"


def backend_cache_clear() -> None:
    _backend_cache.clear()


def generation_chunks(r: RLHFRound, pending: list[int], messages: dict, *, per_chunk: int, sampled_from: str):
    """[(prompt ids, seed)]: the generate calls of one generation pass, in order. Prompts of
    similar length go together (short left-padding); each chunk is one generate batch, and its
    seed depends only on the round and its first prompt, so a resumed pass samples the same way.
    bench/round.py times plain `model.generate` on exactly these chunks."""
    ordered = sorted(pending, key=lambda pid: (sum(len(m["content"]) for m in messages[pid]), pid))
    salt = 0 if sampled_from == RoundCandidate.SampledFrom.POLICY_IN else 1
    chunks = []
    for start in range(0, len(ordered), per_chunk):
        chunk = ordered[start : start + per_chunk]
        chunks.append((chunk, (r.seed * 1_000_003 + chunk[0] * 7919 + salt) % (2**31)))
    return chunks


def prompts_per_chunk(backend_name: str, n: int) -> int:
    return HTTP_PROMPTS_PER_CHUNK if backend_name == "openai" else max(1, settings.GENERATION_BATCH_SIZE // n)
