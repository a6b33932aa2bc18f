"""Choose the reward defaults on the TRAINING pairs only: k-fold validation, prompt-disjoint.

    .venv/bin/python bench/reward_sweep.py                 # every variant, 3 folds
    .venv/bin/python bench/reward_sweep.py --variants defaults mean-pool --folds 3

bench/reward_hh.py compares our trainer with TRL's on 512 test pairs. Picking settings by
looking at those test pairs would make that comparison meaningless, so the settings are
chosen here instead: the 1,800 TRAINING pairs of the same seed-0 split are cut into `--folds`
prompt-disjoint folds; each variant trains on all folds but one and is scored on the one left
out, for every fold. The test pairs are never loaded into a worker (asserted).

Each (variant, fold) runs in its own subprocess with 1 torch thread, `--jobs` at a time
(2 on a 2-core machine), and writes its result to var/bench/reward_sweep/ so an interrupted
sweep resumes where it stopped (--fresh starts over). Printed: accuracy per fold, accuracy over
all validation pairs pooled, its standard error, and CPU seconds per pair.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.common import fmt, print_table  # noqa: E402
from bench.reward_hh import SEED, _pair_from_json, _pair_to_json, load_pairs, split_exact  # noqa: E402

OUT = REPO_ROOT / "var" / "bench" / "reward_sweep"
# name -> RewardConfig overrides (everything else: the RewardConfig defaults of the checkout).
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "head-pool": {"pooling": "head"},
    "mean-pool": {"pooling": "mean"},
    "2-epochs": {"epochs": 2},
    "no-length-grouping": {"length_grouping": False},
    "lr-5e-5": {"learning_rate": 5e-5},
    "mean-no-margins": {"pooling": "mean", "strength_margins": None},
    "mean-2-epochs": {"pooling": "mean", "epochs": 2},
}


def folds_of(train, k: int, seed: int):
    """k prompt-disjoint folds of the training pairs: groups ranked by a seeded hash, dealt
    round-robin (a fold's pairs keep their input order)."""
    groups = sorted(
        {p.group for p in train}, key=lambda g: hashlib.sha256(f"fold{seed}:{g}".encode()).hexdigest()
    )
    fold_of = {g: i % k for i, g in enumerate(groups)}
    return [[p for p in train if fold_of[p.group] == f] for f in range(k)]


def run_job(variant: str, fold: int, split_file: Path, result_file: Path) -> None:
    from training.ml.reward import RewardConfig, train_reward_model

    split = json.loads(split_file.read_text())
    folds = [[_pair_from_json(d) for d in f] for f in split["folds"]]
    val = folds[fold]
    fit_on = [p for i, f in enumerate(folds) if i != fold for p in f]
    config = RewardConfig(threads=1, **VARIANTS[variant])
    import tempfile

    with tempfile.TemporaryDirectory(prefix="reward-sweep-") as tmp:
        result = train_reward_model(fit_on, config, Path(tmp) / "model", eval_pairs=val)
    m = result.metrics
    correct = round(m["heldout_accuracy"] * m["test_pairs"])
    result_file.write_text(
        json.dumps(
            {
                "variant": variant,
                "fold": fold,
                "accuracy": m["heldout_accuracy"],
                "correct": correct,
                "pairs": m["test_pairs"],
                "loss": m["heldout_loss"],
                "train_pairs": m["train_pairs"],
                "cpu_seconds": m["train_cpu_seconds"],
                "config": VARIANTS[variant],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time (1 thread each)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--job", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        run_job(args.job[0], int(args.job[1]), args.split, args.result)
        return

    pairs = load_pairs()
    train, test = split_exact(pairs, 1800, 512, SEED)
    folds = folds_of(train, args.folds, SEED)
    test_groups = {p.group for p in test}
    assert not any(p.group in test_groups for f in folds for p in f), "a test prompt leaked into a fold"
    print(
        f"{len(train)} training pairs of the seed-{SEED} split (the {len(test)} test pairs are not used) "
        f"-> {args.folds} prompt-disjoint folds of {', '.join(str(len(f)) for f in folds)} pairs"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    split_file = OUT / f"folds-{args.folds}.json"
    split_file.write_text(json.dumps({"folds": [[_pair_to_json(p) for p in f] for f in folds]}))
    todo = []
    for v in args.variants:
        for f in range(args.folds):
            result = OUT / f"{v}-k{args.folds}-f{f}.json"
            if args.fresh or not result.is_file():
                todo.append((v, f, result))
    running: list[tuple[subprocess.Popen, str]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            v, f, result = todo.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--job", v, str(f)]
            cmd += ["--split", str(split_file), "--result", str(result)]
            log = open(OUT / f"{v}-k{args.folds}-f{f}.log", "w")  # noqa: SIM115 (closed with the process)
            print(f"[{time.strftime('%H:%M:%S')}] {v} fold {f} ...", flush=True)
            running.append(
                (subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT), f"{v} fold {f}")
            )
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                print(f"[{time.strftime('%H:%M:%S')}] {name} exited {proc.returncode}", flush=True)

    rows = []
    for v in args.variants:
        runs = [OUT / f"{v}-k{args.folds}-f{f}.json" for f in range(args.folds)]
        results = [json.loads(r.read_text()) for r in runs if r.is_file()]
        if len(results) != args.folds:
            rows.append([v, "missing folds (see the .log files)", "", "", "", ""])
            continue
        correct, n = sum(r["correct"] for r in results), sum(r["pairs"] for r in results)
        acc = correct / n
        cpu = sum(r["cpu_seconds"] for r in results) / sum(r["train_pairs"] for r in results)
        rows.append(
            [
                v,
                json.dumps(VARIANTS[v]) if VARIANTS[v] else "(RewardConfig defaults)",
                " ".join(fmt(r["accuracy"], 3) for r in results),
                fmt(acc, 4),
                fmt(math.sqrt(acc * (1 - acc) / n), 4),
                fmt(cpu, 3),
            ]
        )
    print()
    print_table(["variant", "overrides", "acc per fold", "pooled acc", "std err", "cpu s/pair"], rows)


if __name__ == "__main__":
    main()
