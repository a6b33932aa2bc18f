"""What a DPO policy update costs on this machine: full fine-tune against LoRA (peft), and the
full fine-tune the old way (the baseline: reference kept in memory and run at every step, the
whole batch in one pass).

Each method runs in its own fresh subprocess (so the peak RSS is that method's alone):
`--steps` optimiser steps of `training.ml.dpo.dpo_update` (the round's update, TRL's
DPOTrainer) on `--batch` pairs per step, every pair about `--tokens` tokens (prompt + the longer
response, the policy's tokenizer), taken in file order from the HH harmless file
(bench.common.HH_FILE). The policy is SmolLM2-135M-Instruct (training.ml.smollm.
default_policy_dir), or a tiny model built in code with `--tiny` (a smoke run: seconds).

The reference is the policy's own folder, as in a lineage's first round: the full update loads
it, precomputes its log-probabilities and drops it before training (`precompute_reference`, the
default), the LoRA update computes them with the adapter disabled. Later rounds of a LoRA
lineage load the reference too (training.ml.dpo), so LoRA's saving is in the gradients and
the optimiser's state, and in the peak while the reference is loaded.

Step time: the median over steps 2..N (the first step pays for warm-up and is shown apart).
Peak RSS: the child process's own (getrusage). Learning rates: 5e-6 full (the round default),
5e-5 LoRA (an adapter usually wants about 10x); they change the losses, not the costs.

    .venv/bin/python -m bench.dpo_update --tiny       # proves it works
    .venv/bin/python -m bench.dpo_update              # SmolLM2, 6 steps of 4 pairs of ~300 tokens

"update s" is the whole `dpo_update` call (loading, the reference pass, training, saving): the
precomputed reference's pass is not inside the step times, so compare whole updates across the
kept and full rows.

Last line: `bench dpo_update: kept_update_s=... full_update_s=... lora_update_s=...
full_step_s=... lora_step_s=... ratio=... kept_rss_mb=... full_rss_mb=... lora_rss_mb=...`
(ratio = lora_step_s / full_step_s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO_ROOT, fmt, hh_pairs, peak_rss_mb, print_table

METHODS = ("kept", "full", "lora")
# kept: the full update as it was before precompute_reference and micro-batches (the baseline)
CONFIG = {
    "kept": {
        "method": "full",
        "learning_rate": 5e-6,
        "precompute_reference": False,
        "micro_batch_size": 10**6,
    },
    "full": {"method": "full", "learning_rate": 5e-6},
    "lora": {"method": "lora", "learning_rate": 5e-5},
}
RESULT_MARK = "RESULT "


def pairs_of_length(tokenizer, want: int, tokens: int) -> list:
    """`want` HH pairs, in file order, whose prompt + longer response is within ±25 % of `tokens`."""
    from training.ml.dpo import PolicyPair
    from training.ml.generation import render_prompt

    low, high = int(tokens * 0.75), int(tokens * 1.25)
    out = []
    for row in hh_pairs():
        prompt = len(
            tokenizer(render_prompt(tokenizer, row["messages"]), add_special_tokens=False)["input_ids"]
        )
        longer = max(
            len(tokenizer(row[k], add_special_tokens=False)["input_ids"]) for k in ("chosen", "rejected")
        )
        if low <= prompt + longer <= high and prompt < tokens:
            out.append(PolicyPair(prompt=row["messages"], chosen=row["chosen"], rejected=row["rejected"]))
            if len(out) == want:
                return out
    raise SystemExit(
        f"only {len(out)} HH pairs of {low}..{high} tokens; ask for fewer steps or another length"
    )


def child(args) -> None:
    """One method's update in this (fresh) process; prints its numbers as one JSON line."""
    from training.ml.dpo import DPOUpdateConfig, dpo_update
    from training.ml.policy import load_tokenizer

    policy = Path(args.model)
    pairs = pairs_of_length(load_tokenizer(policy), args.steps * args.batch, args.tokens)
    config = DPOUpdateConfig(
        beta=0.1,
        batch_size=args.batch,
        max_steps=args.steps,
        max_length=int(args.tokens * 1.25),
        max_prompt_length=args.tokens,
        seed=0,
        threads=args.threads,
        **CONFIG[args.child],
    )
    marks: list[float] = []

    def on_progress(p) -> None:
        marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as scratch:
        started = time.perf_counter()
        result = dpo_update(policy, policy, pairs, config, Path(scratch) / "out", on_progress=on_progress)
        update_s = time.perf_counter() - started
        saved_mb = sum(f.stat().st_size for f in result.model_dir.iterdir()) / 2**20
    steps = [b - a for a, b in zip(marks, marks[1:], strict=False)]  # marks[0]: train begin
    m = result.metrics
    out = {
        "method": args.child,
        "steps": result.steps,
        "first_step_s": steps[0] if steps else float("nan"),
        "step_s": statistics.median(steps[1:]) if len(steps) > 1 else float("nan"),
        "train_s": m["train_seconds"],
        "update_s": update_s,
        "peak_rss_mb": peak_rss_mb(),
        "trainable_params": m["trainable_params"],
        "reference": m["reference"],
        "loss": m["loss"],
        "final_loss": m["final_loss"],
        "saved_mb": saved_mb,
    }
    print(RESULT_MARK + json.dumps(out), flush=True)


def run_method(method: str, model: Path, args) -> dict:
    command = [sys.executable, "-m", "bench.dpo_update", "--child", method, "--model", str(model)]
    command += ["--steps", str(args.steps), "--batch", str(args.batch), "--tokens", str(args.tokens)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the {method} update failed (exit {done.returncode})")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def policy_folder(args, scratch: Path) -> Path:
    if args.tiny:
        from training.ml.tiny import save_tiny_policy

        return save_tiny_policy(scratch / "tiny-policy", seed=0)
    from training.ml.smollm import default_policy_dir

    return default_policy_dir(Path(args.models_dir))


def report(results: dict[str, dict], args, model: Path) -> None:
    print(
        f"DPO update, {args.steps} steps x {args.batch} pairs of ~{args.tokens} tokens, "
        f"policy {model.name}; load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs"
    )
    headers = [
        "method",
        "trainable",
        "reference",
        "1st step s",
        "step s",
        "train s",
        "update s",
        "peak RSS MB",
        "saved MB",
    ]
    headers += ["loss", "final loss"]
    rows = [
        [
            r["method"],
            f"{r['trainable_params']:,}",
            r["reference"],
            fmt(r["first_step_s"], 2),
            fmt(r["step_s"], 2),
            fmt(r["train_s"], 1),
            fmt(r["update_s"], 1),
            fmt(r["peak_rss_mb"], 0),
            fmt(r["saved_mb"], 1),
            fmt(r["loss"], 4),
            fmt(r["final_loss"], 4),
        ]  # fmt: skip
        for r in results.values()
    ]
    print_table(headers, rows)
    kept, full, lora = results["kept"], results["full"], results["lora"]
    ratio = lora["step_s"] / full["step_s"] if full["step_s"] else float("nan")
    rss_ratio = lora["peak_rss_mb"] / full["peak_rss_mb"]
    print(
        f"full vs kept (the baseline, same run): whole update x{full['update_s'] / kept['update_s']:.2f}, "
        f"peak RSS x{full['peak_rss_mb'] / kept['peak_rss_mb']:.2f}"
    )
    print(f"LoRA vs full (same run): step time x{ratio:.2f}, peak RSS x{rss_ratio:.2f}")
    print(
        f"bench dpo_update: kept_update_s={kept['update_s']:.1f} full_update_s={full['update_s']:.1f} "
        f"lora_update_s={lora['update_s']:.1f} full_step_s={full['step_s']:.3f} lora_step_s={lora['step_s']:.3f} "
        f"ratio={ratio:.3f} kept_rss_mb={kept['peak_rss_mb']:.0f} full_rss_mb={full['peak_rss_mb']:.0f} "
        f"lora_rss_mb={lora['peak_rss_mb']:.0f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per method")
    parser.add_argument("--batch", type=int, default=4, help="pairs per step")
    parser.add_argument("--tokens", type=int, default=300, help="prompt + longer response, about")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model built in code (smoke run)")
    parser.add_argument("--models-dir", default=str(REPO_ROOT / "var" / "models"))
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is warm-up)")
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-dpo-models-") as scratch:
        model = policy_folder(args, Path(scratch))
        results = {method: run_method(method, model, args) for method in METHODS}
    report(results, args, model)


if __name__ == "__main__":
    main()
