"""Synthetic data shared by the training/ml tests (no Django, tiny models built in code)."""

from __future__ import annotations

import random

from training.ml.records import PreferencePair, SafetyExample

WORDS = "the cat dog sat on a mat ran fast slow big small red blue green house tree river".split()
MARKER = "thanks"
FAST_TRAINING = {"batch_size": 16, "learning_rate": 1e-3, "epochs": 3, "threads": 1}


def fast_config(config_class, backbone, **kw):
    """A training config (RewardConfig, SafetyConfig) for a tiny backbone: big steps, few
    epochs, one thread; `kw` overrides."""
    return config_class(**{"backbone": str(backbone), **FAST_TRAINING, **kw})


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def marker_pairs(n: int, *, seed: int = 0, prompt_words: int = 6, strength=None) -> list[PreferencePair]:
    """Learnable preference: the chosen response ends with MARKER, the rejected one doesn't.
    Every pair has its own prompt."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"q{i} " + sentence(rng, prompt_words)}]
        pairs.append(
            PreferencePair(
                prompt=prompt,
                chosen=sentence(rng, 8) + " " + MARKER,
                rejected=sentence(rng, 8),
                strength=strength,
                pair_id=f"p{i}",
            )
        )
    return pairs


def marker_examples(n: int, *, seed: int = 0) -> list[SafetyExample]:
    """Half the responses carry the unsafe marker word and are flagged."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        unsafe = i % 2 == 0
        text = sentence(rng, 8) + (" poison" if unsafe else "")
        out.append(
            SafetyExample(
                prompt=[{"role": "user", "content": f"q{i} " + sentence(rng, 5)}],
                response=text,
                unsafe=unsafe,
            )
        )
    return out
