"""A mean-pooled scoring head on any Hugging Face encoder (RewardConfig.pooling = "mean").

Why: AutoModelForSequenceClassification scores BERT-family models from the [CLS] token through
the checkpoint's pooler (dense + tanh). Sentence-embedding models such as all-MiniLM-L6-v2 were
trained to be read by the MEAN of their token states, not by [CLS] (their pooler is left over
from pre-training), so a head on the mean starts from the representation the model was tuned
for. bench/reward_sweep.py measures both on validation folds of the training pairs.

Saved as the encoder's own folder (save_pretrained) plus `mean_head.safetensors` holding the
linear head; backbones.load_trained rebuilds it from the folder's rlhf_ml.json ("pooling").
This module imports torch at import time: import it lazily (backbones does).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

HEAD_FILE = "mean_head.safetensors"


class MeanPooledClassifier(torch.nn.Module):
    """logits = Linear(mean of the encoder's last hidden states over real tokens)."""

    def __init__(self, encoder, num_labels: int = 1):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.config.num_labels = num_labels
        self.score = torch.nn.Linear(encoder.config.hidden_size, num_labels)
        # As transformers initialises a new classification head.
        std = getattr(encoder.config, "initializer_range", 0.02)
        torch.nn.init.normal_(self.score.weight, mean=0.0, std=std)
        torch.nn.init.zeros_(self.score.bias)

    def forward(self, input_ids, attention_mask, **_):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return SequenceClassifierOutput(logits=self.score(pooled))

    def save(self, output_dir: Path) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(output_dir)
        save_file(
            {k: v.detach().contiguous() for k, v in self.score.state_dict().items()},
            str(Path(output_dir) / HEAD_FILE),
        )

    @classmethod
    def load(cls, folder: Path, encoder) -> MeanPooledClassifier:
        from safetensors.torch import load_file

        head = load_file(str(Path(folder) / HEAD_FILE))
        model = cls(encoder, num_labels=int(head["weight"].shape[0]))
        model.score.load_state_dict(head)
        return model
