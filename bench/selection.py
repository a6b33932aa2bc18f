"""Which pairs should raters see? Ensemble disagreement vs single-model uncertainty vs random.

A simulated active-learning loop on the HH-RLHF harmless pairs
(tests/data/hh-rlhf-harmless-base-test.jsonl.gz), split by OPENING QUESTION (bench.loop) into
three disjoint sets: oracle pairs, a pool of pairs that may be asked, and held-out test pairs.

Features: frozen all-MiniLM-L6-v2, the mean of its last hidden states over each (conversation,
response) text (training.ml.ensemble.pooled_features, as the reward-head ensemble reads a reward
model), computed once; every model below is a linear Bradley–Terry head on them
(training.ml.ensemble.fit_head / fit_heads: L-BFGS, L2 1e-3).

Truth (`--oracle`): "head" (default) — a linear head fitted on the oracle pairs' dataset labels
(disjoint questions), whose preference on a pair is the truth, as bench/loop.py's oracle is a
reward model trained on its own split; "labels" — the dataset's own chosen/rejected labels
(which a linear head on frozen features fits only partly). A simulated rater agrees with the
truth with probability `--agreement` (0.75); a pair's vote is drawn once per seed (the same for
every strategy: common random numbers), and the two sides are shown in a seeded random order.

Per seed: the same random start set of `--start` labelled pool pairs for every strategy; then
`--steps` times: fit the reward model (one head on all votes so far), record its held-out
accuracy against the truth, choose `--batch` new pairs from the unlabelled pool, vote, repeat.
  random     uniformly random pairs (the baseline)
  uncertain  the pairs whose P(A ≻ B) under the one head is closest to 1/2 (Lewis & Gale 1994)
  ensemble   the pairs the K = `--heads` bootstrap heads disagree about most: largest sd across
             heads of sigmoid(r_k(A) − r_k(B)) (training.ml.pair_selection.head_disagreement;
             Christiano et al. 2017; heads on one backbone as in Dwaracherla et al. 2024)
uncertain and ensemble explore as the round does: each pick is a random pair with probability
`--explore` (0.1).

Output: accuracy per strategy and step (mean over seeds; 95 % Wilson interval over all seeds'
held-out pairs), the final difference to random (paired bootstrap over seeds × held-out pairs),
labels needed to reach random's final accuracy, and as its last line:
`bench selection: acc_random=... acc_uncertain=... acc_ensemble=... ensemble_minus_random=...
ci_low=... ci_high=... labels_ratio_ensemble=... total_s=...`.

    nice -n 19 .venv/bin/python bench/selection.py --quick   # minutes
    nice -n 19 .venv/bin/python bench/selection.py           # 5 seeds, the whole file
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import HH_FILE, fmt, hh_pairs, print_table  # noqa: E402
from bench.loop import opening_question  # noqa: E402
from bench.raters import paired_difference  # noqa: E402

STRATEGIES = ("random", "uncertain", "ensemble")


def load_pairs(limit: int | None) -> list[dict]:
    """HH pairs as {question, messages, chosen, rejected} (the importer's parser)."""
    out = [
        {
            "question": opening_question(p["transcript"]),
            **{k: p[k] for k in ("messages", "chosen", "rejected")},
        }
        for p in hh_pairs()
        if p["messages"]
    ]
    return out[:limit] if limit else out


def split(
    pairs: list[dict], seed: int, fractions: tuple[float, float]
) -> tuple[list[int], list[int], list[int]]:
    """(oracle, pool, test) pair indices, disjoint by opening question."""
    questions = sorted({p["question"] for p in pairs})
    random.Random(seed).shuffle(questions)
    n_oracle, n_test = (round(f * len(questions)) for f in fractions)
    side = {q: 0 for q in questions[:n_oracle]}
    side.update({q: 2 for q in questions[n_oracle : n_oracle + n_test]})
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, p in enumerate(pairs):
        parts[side.get(p["question"], 1)].append(i)
    return parts


def embed(pairs: list[dict], *, max_length: int, threads: int, cache: Path | None):
    """(chosen features, rejected features): frozen MiniLM, mean pooled, standardised; kept in
    `cache` (a file per pair count and token limit) so a rerun skips the backbone."""
    import torch

    if cache is not None:
        cache = cache / f"bench-selection-{len(pairs)}-{max_length}-{HH_FILE.stat().st_size}.pt"
        if cache.is_file():
            return torch.load(cache)
    from training.ml import backbones
    from training.ml.ensemble import pooled_features, standardiser
    from training.ml.records import render_conversation

    texts = [render_conversation(p["messages"], p["chosen"]) for p in pairs]
    texts += [render_conversation(p["messages"], p["rejected"]) for p in pairs]
    with backbones.torch_threads(threads):
        model, tokenizer = backbones.load_classifier(
            backbones.default_minilm_dir(), num_labels=1, what="bench backbone", pooling="mean"
        )
        feats = pooled_features(model, tokenizer, texts, max_length, batch_size=64)
    mean, scale = standardiser(feats)
    feats = (feats - mean) / scale
    out = feats[: len(pairs)], feats[len(pairs) :]
    if cache is not None:
        torch.save(out, cache)
    return out


def truth_of(args, x_c, x_r, oracle: list[int]):
    """Per pair: does its dataset-chosen side win under the truth? (bool tensor)"""
    import torch

    from training.ml.ensemble import fit_head

    if args.oracle == "labels":
        return torch.ones(len(x_c), dtype=torch.bool)
    w = fit_head(x_c[oracle], x_r[oracle])
    return (x_c - x_r) @ w > 0


class Loop:
    """One seed's simulated raters and the features, shared by the strategies."""

    def __init__(self, args, x_c, x_r, truth, pool: list[int], test: list[int], seed: int):
        import torch

        self.args, self.pool, self.test = args, pool, test
        rng = random.Random(seed)
        # Seeded side order per pair (A is the dataset-chosen side or not) and one vote per pair.
        flip = torch.tensor([rng.random() < 0.5 for _ in range(len(x_c))])
        self.x_a = torch.where(flip.unsqueeze(1), x_r, x_c)
        self.x_b = torch.where(flip.unsqueeze(1), x_c, x_r)
        a_truly = truth ^ flip  # the truth prefers A
        agrees = torch.tensor([rng.random() < args.agreement for _ in range(len(x_c))])
        self.vote_a = a_truly == agrees  # the rater says A
        self.a_truly = a_truly
        self.start = rng.sample(pool, args.start)
        self.seed = seed

    def fit(self, labelled: list[int]):
        from training.ml.ensemble import fit_head

        win, lose = self._sides(labelled)
        return fit_head(win, lose)

    def _sides(self, labelled: list[int]):
        import torch

        idx = torch.tensor(labelled)
        a_won = self.vote_a[idx].unsqueeze(1)
        return torch.where(a_won, self.x_a[idx], self.x_b[idx]), torch.where(
            a_won, self.x_b[idx], self.x_a[idx]
        )

    def correct(self, w) -> list[float]:
        import torch

        idx = torch.tensor(self.test)
        diff = (self.x_a[idx] - self.x_b[idx]) @ w
        right = torch.where(self.a_truly[idx], diff > 0, diff < 0).float() + 0.5 * (diff == 0).float()
        return right.tolist()

    def scores(self, strategy: str, w, labelled: list[int], rest: list[int], step: int) -> list[float]:
        """Higher = asked first."""
        import torch

        idx = torch.tensor(rest)
        if strategy == "uncertain":
            p = torch.sigmoid((self.x_a[idx] - self.x_b[idx]) @ w)
            return (-(p - 0.5).abs()).tolist()
        from training.ml.ensemble import fit_heads
        from training.ml.pair_selection import head_disagreement

        win, lose = self._sides(labelled)
        heads = fit_heads(win, lose, heads=self.args.heads, seed=1000 * self.seed + 100 * step)
        sa, sb = heads.scores(self.x_a[idx]).tolist(), heads.scores(self.x_b[idx]).tolist()
        return [head_disagreement(a, b).sd for a, b in zip(sa, sb, strict=True)]

    def choose(self, strategy: str, w, labelled: list[int], rng: random.Random, step: int) -> list[int]:
        taken = set(labelled)
        rest = [i for i in self.pool if i not in taken]
        batch = min(self.args.batch, len(rest))
        if strategy == "random":
            return rng.sample(rest, batch)
        explore = sum(rng.random() < self.args.explore for _ in range(batch))
        ranked = sorted(
            zip(self.scores(strategy, w, labelled, rest, step), rest, strict=True), key=lambda t: -t[0]
        )
        chosen = [i for _, i in ranked[: batch - explore]]
        left = [i for _, i in ranked[batch - explore :]]
        return chosen + rng.sample(left, explore)

    def run(self, strategy: str) -> list[list[float]]:
        """Per step (start, then after each batch): held-out correctness of the refitted head."""
        rng = random.Random(f"{self.seed}:{strategy}")
        labelled = list(self.start)
        curve = []
        for step in range(self.args.steps + 1):
            w = self.fit(labelled)
            curve.append(self.correct(w))
            if step < self.args.steps:
                labelled += self.choose(strategy, w, labelled, rng, step)
        return curve


def labels_to_reach(curve: list[float], target: float, args) -> int | None:
    for step, acc in enumerate(curve):
        if acc >= target:
            return args.start + step * args.batch
    return None


def report(args, results: dict[str, list[list[list[float]]]], total_s: float) -> None:
    """results[strategy][seed][step] = held-out correctness list."""
    from training.ml.stats import wilson_interval

    pooled = {
        s: [sum((r[step] for r in results[s]), []) for step in range(args.steps + 1)] for s in STRATEGIES
    }
    mean = {s: [sum(c) / len(c) for c in pooled[s]] for s in STRATEGIES}
    rows = []
    for step in range(args.steps + 1):
        row = [args.start + step * args.batch]
        for s in STRATEGIES:
            w = wilson_interval(sum(pooled[s][step]), len(pooled[s][step]))
            row.append(f"{w.value:.4f} [{w.low:.3f}, {w.high:.3f}]")
        rows.append(row)
    print(f"held-out accuracy vs the truth ({args.seeds} seeds × {len(results['random'][0][0])} test pairs):")
    print_table(["labels", *STRATEGIES], rows)
    target = mean["random"][-1]
    diffs = {}
    for s in ("uncertain", "ensemble"):
        d, low, high = paired_difference(pooled[s][-1], pooled["random"][-1])
        reach = labels_to_reach(mean[s], target, args)
        total = args.start + args.steps * args.batch
        diffs[s] = (d, low, high, (reach / total) if reach else None)
        print(
            f"{s} - random at {total} labels: {100 * d:+.2f} points (95 % paired bootstrap "
            f"[{100 * low:+.2f}, {100 * high:+.2f}]); accuracy ratio {mean[s][-1] / target:.3f}; "
            f"labels to reach random's final accuracy: {reach if reach else f'> {total}'} of {total}"
        )
    d, low, high, ratio = diffs["ensemble"]
    print(
        f"bench selection: acc_random={mean['random'][-1]:.4f} acc_uncertain={mean['uncertain'][-1]:.4f} "
        f"acc_ensemble={mean['ensemble'][-1]:.4f} ensemble_minus_random={d:+.4f} ci_low={low:+.4f} "
        f"ci_high={high:+.4f} labels_ratio_ensemble={fmt(ratio, 3) if ratio else 'nan'} total_s={total_s:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,200 pairs, 3 seeds, 128 tokens")
    parser.add_argument("--limit", type=int, default=None, help="use the first N pairs of the file")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--start", type=int, default=32, help="labelled pairs before the first choice")
    parser.add_argument("--batch", type=int, default=32, help="pairs chosen per step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--explore", type=float, default=0.1)
    parser.add_argument(
        "--agreement", type=float, default=0.75, help="simulated rater's agreement with the truth"
    )
    parser.add_argument("--oracle", choices=("head", "labels"), default="head")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()), help="embedding cache folder"
    )
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.seeds, args.max_length = args.limit or 1200, min(args.seeds, 3), 128
    started = time.perf_counter()
    pairs = load_pairs(args.limit)
    oracle, pool, test = split(pairs, args.split_seed, (0.3, 0.25))
    t0 = time.perf_counter()
    cache = None if args.no_cache else args.cache
    x_c, x_r = embed(pairs, max_length=args.max_length, threads=args.threads, cache=cache)
    print(
        f"{len(pairs)} pairs: {len(oracle)} oracle, {len(pool)} pool, {len(test)} test (disjoint questions); "
        f"embedded {2 * len(pairs)} texts ({args.max_length} tokens) in {time.perf_counter() - t0:.0f} s; "
        f"truth: {args.oracle}, rater agreement {args.agreement}"
    )
    import torch

    torch.set_num_threads(args.threads)
    truth = truth_of(args, x_c, x_r, oracle)
    if args.oracle == "head":
        agree = truth[test].float().mean().item()
        print(f"oracle head agrees with the dataset labels on {agree:.3f} of the test pairs")
    results: dict[str, list] = {s: [] for s in STRATEGIES}
    for seed in range(args.seeds):
        loop = Loop(args, x_c, x_r, truth, pool, test, seed)
        t0 = time.perf_counter()
        for s in STRATEGIES:
            results[s].append(loop.run(s))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    report(args, results, time.perf_counter() - started)


if __name__ == "__main__":
    main()
