"""A judge of another family than the oracle: a linear Bradley–Terry model on bag-of-words.

bench/loop.py's oracle and the project's reward model are both MiniLM cross-encoders trained on
HH harmless pairs, so a preference they share (short, complete answers, say) can look like
improvement to both. This judge shares neither the backbone nor the tokenizer nor the position
signal: the score of a response is w·φ(response), φ its TF-IDF vector (word 1- and 2-grams,
sublinear counts, L2-normalised, so long and short texts have the same norm), w fitted by
logistic regression on φ(chosen) − φ(rejected) (Bradley–Terry, no intercept) over the same
judge-training pairs. It cannot see the prompt (a prompt's features cancel in the difference),
so it judges the kind of answer, not whether it answers the question. Held-out pairs are split
by opening question, as bench/loop.py splits everything else.

scikit-learn does the vectorising and the fit (it is already pinned through
alt-profanity-check; requirements.txt names it for this use).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class LexicalJudge:
    vectorizer: object
    weights: np.ndarray
    heldout_accuracy: float
    heldout_pairs: int
    train_pairs: int

    def score(self, responses: Sequence[str]) -> list[float]:
        return [float(x) for x in self.vectorizer.transform(list(responses)) @ self.weights]


def _pairs(lines: Sequence[str]) -> list[tuple[str, str, str]]:
    """(opening question, chosen, rejected) of each pair the oracle trains on too (bench.common.hh_parse)."""
    from bench.common import hh_parse

    return [(r["messages"][0]["content"], r["chosen"], r["rejected"]) for r in hh_parse(lines)]


def lexical_judge_train(lines: Sequence[str], *, heldout_every: int = 10, c: float = 1.0) -> LexicalJudge:
    """Fit on the HH judge lines; one opening question in `heldout_every` is held out."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    pairs = _pairs(lines)

    def held(q: str) -> bool:
        return int(hashlib.sha256(q.encode()).hexdigest(), 16) % heldout_every == 0

    train = [p for p in pairs if not held(p[0])]
    test = [p for p in pairs if held(p[0])]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    vectorizer.fit([t for _, c_, r in train for t in (c_, r)])
    diff = vectorizer.transform([c_ for _, c_, _ in train]) - vectorizer.transform([r for _, _, r in train])
    from scipy.sparse import vstack

    x = vstack([diff, -diff])
    y = np.r_[np.ones(diff.shape[0]), np.zeros(diff.shape[0])]
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    judge = LexicalJudge(vectorizer, model.coef_.ravel(), float("nan"), len(test), len(train))
    if test:
        sc = judge.score([c_ for _, c_, _ in test])
        sr = judge.score([r for _, _, r in test])
        judge.heldout_accuracy = sum((a > b) + 0.5 * (a == b) for a, b in zip(sc, sr, strict=True)) / len(
            test
        )
    return judge
