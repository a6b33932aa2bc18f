"""Which learning rate and update method move the policy towards the judge? One update, several ways.

The round's update defaults (learning rate, full fine-tune or LoRA) were set from the issue's own
measurement, not from the judge. This bench measures them with the judge, one DPO update per
arm on the same pairs, so the arms differ in nothing else.

It reads a finished bench/loop.py run: its database (`bench_loop`, which every loop run leaves in
place) and its `--dump` file (the evaluation prompts, the judge pairs and the base's scored
samples). The pairs are built as the loop's offline baseline builds them, from round 1's own
candidates (all sampled from the base): best vs worst by the last round's shaped reward (the
offline baseline's labeller), one a prompt.
Each arm updates the base on them with round 1's other settings (β, epochs, batch, seed), is
sampled on the evaluation prompts with the loop's seeds, and is judged against the base's samples
by the loop's oracle (win rate, 95 % bootstrap interval over prompts), by length-controlled win
rate and by the judge of another family (bench/loop_report.py), with KL to the base.

    .venv/bin/python -m bench.update_sweep var/bench/loop-<time>.json
    .venv/bin/python -m bench.update_sweep var/bench/loop-<time>.json --arms full:5e-6 lora:5e-5

The baseline in the same run is the project's default arm (`full` at the default learning rate):
the table gives each arm's update seconds as a ratio to it.

Last line: `bench update_sweep: winrate_<arm>=... low_<arm>=... kl_<arm>=... update_s_<arm>=...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import database_url_with_name, fmt, peak_rss_mb, print_table  # noqa: E402
from bench.loop import DB_NAME, evaluate_all, offline_pairs, win_rate  # noqa: E402

DEFAULT_ARMS = ("full:1e-6", "full:5e-6", "full:2e-5", "lora:5e-5")


def arm_parse(text: str) -> tuple[str, float]:
    method, _, lr = text.partition(":")
    if method not in ("full", "lora") or not lr:
        raise argparse.ArgumentTypeError(
            f"an arm is method:learning_rate (full:5e-6, lora:5e-5), not {text!r}"
        )
    try:
        value = float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{lr!r} is not a learning rate") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a learning rate is > 0, not {value}")
    return method, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump", help="bench/loop.py's --dump file (its database must still be there)")
    parser.add_argument("--arms", nargs="+", type=arm_parse, default=[arm_parse(a) for a in DEFAULT_ARMS])
    args = parser.parse_args(argv)
    data = json.loads(Path(args.dump).read_text())
    loop_args = SimpleNamespace(**data["args"])
    started = time.perf_counter()

    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    os.environ["DATABASE_URL"] = database_url_with_name(base_url, DB_NAME)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/8")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # the loop's database may predate a migration
    from core.jobs import JobStatus
    from training.ml.dpo import dpo_update
    from training.models import RewardModel, RLHFRound, RoundSettings
    from training.services.rounds.steps.updating import _dpo_config

    oracle_rm = RewardModel.objects.filter(project__slug="bench-loop-oracle").first()
    r1 = RLHFRound.objects.filter(project__slug="bench-loop", number=1, status=JobStatus.SUCCEEDED).first()
    if oracle_rm is None or r1 is None or not Path(oracle_rm.artefact_path).is_dir():
        raise SystemExit(
            f"no finished bench/loop.py run in the database {DB_NAME!r} (run bench/loop.py first)"
        )
    models_dir = Path(oracle_rm.artefact_path).parent
    os.environ["MODELS_DIR"] = str(models_dir)
    project = r1.project
    rounds = list(RLHFRound.objects.filter(project=project, status=JobStatus.SUCCEEDED).order_by("number"))
    pairs, _want, _ = offline_pairs(project, rounds, loop_args, sample_more=False)
    base_path = r1.policy_in.path
    default_lr = RoundSettings._meta.get_field("learning_rate").default
    print(
        f"pairs: {len(pairs)} from round 1's base candidates ({sum(p.chosen_truncated for p in pairs)} chosen "
        f"truncated); round 1's settings: {json.dumps({k: r1.config.get(k) for k in ('beta', 'dpo_epochs', 'dpo_batch_size')})}"
    )

    checkpoints, updates = {}, {}
    for method, lr in args.arms:
        name = f"{method}:{lr:g}"
        config = dataclasses.replace(_dpo_config(r1), learning_rate=lr, method=method)
        t0 = time.perf_counter()
        result = dpo_update(
            base_path, base_path, pairs, config, models_dir / "sweep" / name.replace(":", "-")
        )
        updates[name] = {"seconds": time.perf_counter() - t0, "steps": result.steps, **result.metrics}
        checkpoints[name] = str(result.model_dir)
        print(f"{name}: {result.steps} steps, {updates[name]['seconds']:.0f} s", file=sys.stderr)

    prompts = [[{"role": "user", "content": q}] for q in data["eval_prompts"]]
    last_rm = rounds[-1].reward_model  # the models that labelled the pairs, as in bench/loop.py
    harm_dir = last_rm.safety_path if last_rm.safety_source == "learned" else ""
    results = evaluate_all(
        checkpoints, base_path, prompts, project, oracle_rm.artefact_path, harm_dir, loop_args,
        int(r1.config["max_new_tokens"]),
    )  # fmt: skip
    results = {"base": data["results"]["base"], **results}

    baseline = f"full:{default_lr:g}"
    base_s = updates.get(baseline, {}).get("seconds")
    rows, line = [], []
    for name, res in results.items():
        if name == "base":
            continue
        wr = win_rate(res, results["base"])
        u = updates[name]
        kl = sum(res["kl"]) / len(res["kl"])
        rows.append([
            name + (" (default)" if name == baseline else ""),
            u["steps"],
            fmt(u.get("final_loss"), 4),
            fmt(u.get("reward_accuracy"), 2),
            f"{u['seconds']:.0f}" + (f" (×{u['seconds'] / base_s:.2f})" if base_s else ""),
            f"{wr.value:.3f} [{wr.low:.3f}, {wr.high:.3f}]",
            fmt(kl, 2),
            fmt(sum(res["truncated"]) / len(res["truncated"]), 3),
            f"{sum(res['tokens']) / len(res['tokens']):.0f}",
        ])  # fmt: skip
        key = name.replace(":", "_")
        line.append(
            f"winrate_{key}={wr.value:.3f} low_{key}={wr.low:.3f} kl_{key}={kl:.2f} update_s_{key}={u['seconds']:.0f}"
        )
    print_table(
        ["arm (method:lr)", "steps", "final loss", "reward acc", "update s", "oracle win rate vs base [95% CI]",
         "KL", "truncated", "mean tokens"],
        rows,
    )  # fmt: skip
    from bench.loop_report import report

    print(report(results, data["judge_lines"]))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"eval {len(prompts)} prompts x {loop_args.eval_samples}; total {time.perf_counter() - started:.0f} s; "
          f"peak RSS {peak_rss_mb():.0f} MB; load: {load}")  # fmt: skip
    print("bench update_sweep: " + " ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
