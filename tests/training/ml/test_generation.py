"""Generation backends and sequence log-probabilities, on a tiny model built in code and a local HTTP peer."""

import pytest
import torch

from tests.http_peer import JsonPeer, serving
from training.ml.generation import (
    GenerationCancelled,
    GenerationError,
    GenerationParams,
    GenerationProgress,
    LocalTransformersBackend,
    OpenAICompatibleBackend,
    estimate_kl,
    render_prompt,
    sequence_logprobs,
)
from training.ml.records import TrainingCancelled
from training.ml.tiny import build_tiny_causal_lm, save_tiny_policy

PROMPTS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "user", "content": "What is the capital of France? Tell me in one sentence please."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    # init_std 0.5: peaky next-token distributions, so greedy decoding has no near-ties
    return save_tiny_policy(tmp_path_factory.mktemp("gen") / "policy", seed=1, init_std=0.5)


@pytest.fixture(scope="module")
def backend(policy_dir):
    return LocalTransformersBackend(policy_dir, batch_size=6)


def manual_logprob(model, prompt_ids: list[int], response_ids: list[int]) -> float:
    """log p(response | prompt), one token at a time from a single unpadded forward pass."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    total = 0.0
    for offset, token in enumerate(response_ids):
        position = len(prompt_ids) + offset - 1
        total += torch.log_softmax(logits[position], dim=-1)[token].item()
    return total


def test_local_backend_returns_n_candidates_per_prompt_with_params(backend):
    params = GenerationParams(n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=4)
    groups = backend.generate(PROMPTS, params)

    assert len(groups) == len(PROMPTS)
    for index, group in enumerate(groups):
        assert len(group) == 3
        for candidate in group:
            assert candidate.prompt_index == index
            assert candidate.params == params.as_dict()
            assert 1 <= candidate.num_tokens <= 10
            assert candidate.logprob_sum is not None and candidate.logprob_sum < 0
            assert candidate.finish_reason == ("length" if candidate.num_tokens == 10 else "stop")
    texts = [c.text for g in groups for c in g]
    assert len(set(texts)) > 1  # sampling, not one answer copied


def test_seeded_sampling_repeats_and_seeds_differ(backend):
    params = GenerationParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=123)
    torch.manual_seed(0)
    first = backend.generate(PROMPTS, params)
    torch.manual_seed(999)  # the global RNG state must not matter
    again = backend.generate(PROMPTS, params)
    other = backend.generate(
        PROMPTS, GenerationParams(n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=124)
    )
    assert first == again
    assert [c.text for g in first for c in g] != [c.text for g in other for c in g]


def test_left_padded_batch_matches_single_prompt_generation(backend):
    greedy = GenerationParams(n=1, temperature=0, max_new_tokens=12)
    batched = backend.generate(PROMPTS, greedy)  # one left-padded batch of three lengths
    lengths = {len(backend.tokenizer(render_prompt(backend.tokenizer, p))["input_ids"]) for p in PROMPTS}
    assert len(lengths) == 3  # the prompts really need padding
    for prompt, group in zip(PROMPTS, batched, strict=True):
        single = backend.generate([prompt], greedy)[0][0]
        assert group[0].text == single.text
        assert group[0].num_tokens == single.num_tokens
        assert group[0].logprob_sum == pytest.approx(single.logprob_sum, abs=1e-3)


def test_recorded_logprobs_equal_a_forward_pass_over_the_generated_tokens(backend):
    greedy = GenerationParams(n=1, temperature=0, max_new_tokens=10)
    [[candidate]] = backend.generate(PROMPTS[1:2], greedy)

    tokenizer = backend.tokenizer
    prompt_ids = tokenizer(render_prompt(tokenizer, PROMPTS[1]), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = backend.model.generate(
            input_ids=torch.tensor([prompt_ids]),
            do_sample=False,
            max_new_tokens=10,
            pad_token_id=tokenizer.pad_token_id,
        )
    generated = out[0, len(prompt_ids) :].tolist()
    if tokenizer.eos_token_id in generated:  # count up to and including the end-of-turn token
        generated = generated[: generated.index(tokenizer.eos_token_id) + 1]
    assert candidate.num_tokens == len(generated)
    assert candidate.logprob_sum == pytest.approx(
        manual_logprob(backend.model, prompt_ids, generated), abs=1e-3
    )


def test_sampled_logprobs_are_under_the_policy_not_the_sampling_distribution(backend):
    """With temperature 0.3 and top-p 0.5, logprob_sum is still log p under the policy (temperature 1)."""
    params = GenerationParams(n=2, temperature=0.3, top_p=0.5, max_new_tokens=8, seed=21)
    candidates = backend.generate(PROMPTS[:1], params)[0]

    tokenizer = backend.tokenizer
    prompt_ids = tokenizer(render_prompt(tokenizer, PROMPTS[0]), add_special_tokens=False)["input_ids"]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(21)  # the backend samples batch 0 under seed + 0: same tokens
        out = backend.model.generate(input_ids=torch.tensor([prompt_ids]), **backend.generate_kwargs(params))
    for row, candidate in enumerate(candidates):
        generated = out[row, len(prompt_ids) :].tolist()
        if tokenizer.eos_token_id in generated:
            generated = generated[: generated.index(tokenizer.eos_token_id) + 1]
        assert candidate.num_tokens == len(generated)
        assert candidate.logprob_sum == pytest.approx(
            manual_logprob(backend.model, prompt_ids, generated), abs=1e-3
        )


@pytest.mark.parametrize("add_eos", [True, False])
def test_sequence_logprobs_equal_a_manual_forward_pass(backend, policy_dir, add_eos):
    responses = ["The capital of France is Paris.", "Hello! How are you today?", "hi"]
    tokenizer = backend.tokenizer
    expected = []
    for prompt, response in zip(PROMPTS, responses, strict=True):
        prompt_ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        if add_eos:
            response_ids.append(tokenizer.eos_token_id)
        expected.append(manual_logprob(backend.model, prompt_ids, response_ids))

    in_memory = sequence_logprobs(backend.model, tokenizer, PROMPTS, responses, add_eos=add_eos, batch_size=2)
    from_folder = sequence_logprobs(policy_dir, None, PROMPTS, responses, add_eos=add_eos)
    assert in_memory == pytest.approx(expected, abs=1e-3)
    assert from_folder == pytest.approx(expected, abs=1e-3)


def test_kl_estimate_is_zero_against_itself_and_the_mean_logprob_gap_otherwise(backend):
    params = GenerationParams(n=2, temperature=1.0, max_new_tokens=6, seed=8)
    candidates = [c for group in backend.generate(PROMPTS, params) for c in group]
    assert estimate_kl(backend.model, backend.model, backend.tokenizer, PROMPTS, candidates) == pytest.approx(
        0, abs=1e-5
    )

    reference = build_tiny_causal_lm(backend.tokenizer, seed=77, init_std=0.5)
    tokenizer = backend.tokenizer
    gaps = []
    for c in candidates:
        prompt_ids = tokenizer(render_prompt(tokenizer, PROMPTS[c.prompt_index]), add_special_tokens=False)[
            "input_ids"
        ]
        ids = tokenizer(c.text, add_special_tokens=False)["input_ids"]
        ids += [tokenizer.eos_token_id] if c.finish_reason == "stop" else []
        gaps.append(
            manual_logprob(backend.model, prompt_ids, ids) - manual_logprob(reference, prompt_ids, ids)
        )
    kl = estimate_kl(backend.model, reference, tokenizer, PROMPTS, candidates, batch_size=4)
    assert kl == pytest.approx(sum(gaps) / len(gaps), abs=1e-3)
    assert abs(kl) > 0.1


def test_progress_and_cancellation_between_batches(policy_dir):
    backend = LocalTransformersBackend(policy_dir, batch_size=2)  # n=2: one prompt per batch
    params = GenerationParams(n=2, temperature=1.0, max_new_tokens=4, seed=0)
    seen: list[GenerationProgress] = []
    backend.generate(PROMPTS, params, on_progress=seen.append)
    assert [(p.prompts_done, p.prompts_total) for p in seen] == [(0, 3), (1, 3), (2, 3), (3, 3)]

    calls = []

    def stop_after_first_batch():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(GenerationCancelled) as info:
        backend.generate(PROMPTS, params, should_stop=stop_after_first_batch)
    assert isinstance(info.value, TrainingCancelled)
    assert len(calls) == 2


# ------------------------------------------------------------------ OpenAI-compatible backend


class _Peer(JsonPeer):
    """A minimal chat-completions server: canned choices, or an error when the prompt asks for one."""

    requests: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.read_json()
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        content = body["messages"][-1]["content"]
        if content == "fail":
            self.send_json(500, b'{"error": "model exploded"}')
            return
        if content == "garbage":
            self.send_json(200, b"not json")
            return
        choices = []
        for i in range(body["n"]):
            logprobs = None
            if body.get("logprobs"):
                logprobs = {
                    "content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -0.25 * (i + 1)}]
                }
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": f" answer {i} to {content} "},
                    "finish_reason": "length" if i == 0 else "stop",
                    "logprobs": logprobs,
                }
            )
        self.send_json(200, {"choices": list(reversed(choices)), "usage": {"completion_tokens": 6}})


@pytest.fixture
def peer():
    _Peer.requests = []
    with serving(_Peer) as url:
        yield url


def test_openai_backend_sends_the_params_and_parses_choices(peer):
    params = GenerationParams(n=3, temperature=0.7, top_p=0.8, max_new_tokens=20, seed=5)
    prompts = [[{"role": "user", "content": "one"}], [{"role": "user", "content": "two"}]]
    with OpenAICompatibleBackend(peer + "/v1/", "smol", api_key="k-123", max_concurrency=1) as backend:
        groups = backend.generate(prompts, params)

    assert len(_Peer.requests) == 2
    request = _Peer.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer k-123"
    body = request["body"]
    assert {k: body[k] for k in ("model", "n", "temperature", "top_p", "max_tokens", "seed")} == {
        "model": "smol",
        "n": 3,
        "temperature": 0.7,
        "top_p": 0.8,
        "max_tokens": 20,
        "seed": 5,
    }
    assert body["messages"] == [{"role": "user", "content": "one"}]

    assert [[c.text for c in g] for g in groups] == [
        ["answer 0 to one", "answer 1 to one", "answer 2 to one"],
        ["answer 0 to two", "answer 1 to two", "answer 2 to two"],
    ]
    first = groups[1][2]
    assert first.prompt_index == 1
    assert first.params == params.as_dict()
    assert first.num_tokens == 2
    assert first.logprob_sum == pytest.approx(-0.5 - 0.75)
    assert [c.finish_reason for c in groups[0]] == ["length", "stop", "stop"]


def test_openai_backend_without_logprobs(peer):
    with OpenAICompatibleBackend(peer, "smol", request_logprobs=False) as backend:
        [[a, b]] = backend.generate([[{"role": "user", "content": "x"}]], GenerationParams(n=2))
    assert "logprobs" not in _Peer.requests[0]["body"]
    assert a.logprob_sum is None and a.num_tokens == 3  # usage's 6 tokens shared by 2 choices


def test_openai_backend_http_error_is_clear(peer):
    prompts = [[{"role": "user", "content": "ok"}], [{"role": "user", "content": "fail"}]]
    with OpenAICompatibleBackend(peer, "smol") as backend, pytest.raises(GenerationError) as info:
        backend.generate(prompts, GenerationParams(n=1))
    message = str(info.value)
    assert "HTTP 500" in message and "model exploded" in message and "/v1/chat/completions" in message


def test_openai_backend_unreadable_answer_and_dead_server(peer):
    with (
        OpenAICompatibleBackend(peer, "smol") as backend,
        pytest.raises(GenerationError, match="no readable choices"),
    ):
        backend.generate([[{"role": "user", "content": "garbage"}]], GenerationParams(n=1))
    with OpenAICompatibleBackend("http://127.0.0.1:9", "smol", timeout=2) as backend:
        with pytest.raises(GenerationError, match="request to http://127.0.0.1:9/v1/chat/completions failed"):
            backend.generate([[{"role": "user", "content": "x"}]], GenerationParams(n=1))


def test_openai_backend_cancellation(peer):
    prompts = [[{"role": "user", "content": str(i)}] for i in range(4)]
    with (
        OpenAICompatibleBackend(peer, "smol", max_concurrency=2) as backend,
        pytest.raises(GenerationCancelled),
    ):
        backend.generate(prompts, GenerationParams(n=1), should_stop=iter([False, True]).__next__)
    assert len(_Peer.requests) == 2  # the first wave only
