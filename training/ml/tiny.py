"""Tiny causal language models and a chat tokenizer, built in code, for fast tests of the policy code.

The tokenizer is byte-level (every UTF-8 byte is a token, plus a few merges learned from a short
corpus), so any text round-trips; it carries a ChatML chat template like SmolLM2's, with
`<|im_end|>` as both eos and pad. The model is a 2-layer, hidden-64 Llama: a forward pass takes
milliseconds and a DPO step well under a second.

Nothing is downloaded: the tokenizer is trained on the strings below with the `tokenizers` library.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Same shape as SmolLM2's template (a default system turn when none is given).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How are you today? I am fine, thank you.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea and the sky.",
    "Explain why the sky is blue in one sentence.",
    "system user assistant You are a helpful assistant.",
]


def build_tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with a ChatML chat template; pad == eos == `<|im_end|>`, left padding."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_causal_lm(
    tokenizer: PreTrainedTokenizerFast,
    *,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 64,
    init_std: float = 0.02,
) -> LlamaForCausalLM:
    """A randomly initialised Llama sized for tests (about 60 k parameters with the tiny tokenizer).

    A larger `init_std` makes the next-token distribution peakier, which keeps greedy decoding
    away from near-ties (useful when comparing batched and single-prompt outputs).
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=init_std,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval()


def save_tiny_policy(
    path: Path, *, seed: int = 0, init_std: float = 0.02, ends_after: int | None = None
) -> Path:
    """Build a tiny model and tokenizer and save both to `path` (a normal Hugging Face folder).

    `ends_after`: a random model almost never samples its end of turn (pad == eos, and the pad
    row of the tied embedding is zero, so its logit is 0). With a number, the eos row gets
    weights and the saved generation config raises its logit from that many new tokens on
    (transformers' `exponential_decay_length_penalty`), so most responses end: what the
    truncation handling of rounds needs to see both kinds."""
    path = Path(path)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer, seed=seed, init_std=init_std)
    if ends_after is not None:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            row = model.get_input_embeddings().weight[tokenizer.eos_token_id]
            row.copy_(torch.randn(row.shape, generator=generator) * init_std)
        model.generation_config.exponential_decay_length_penalty = (ends_after, 2.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
