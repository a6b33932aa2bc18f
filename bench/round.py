"""One RLHF round with the real defaults, step by step: wall time and peak RSS per step, and
the generation floor measured in the same run.

Defaults: SmolLM2-135M-Instruct policy (converted once under var/models), all-MiniLM-L6-v2
reward backbone, 16 prompts x 4 candidates x 64 new tokens, DPO on the round's pairs. The
round runs in this process through the same service the Celery task calls (`round_advance`,
one step at a time), on its own PostgreSQL database `bench_round` (dropped and re-created).
The reward model is trained inside the round (its "reward" step) on HH-RLHF pairs imported
first. Model output folders go to a temporary MODELS_DIR.

Generation floor: after the round, plain `model.generate` on exactly the batches the round's
generating step used (same prompts per batch, same left-padded inputs, same sampling settings
and seeds), so `ratio_to_floor` is the round's overhead over raw generation (chat template,
tokenising, log-prob recording, decoding, database writes). The generation model is warmed up
once before the round (the first generate call in a process is slow), so neither side pays it.

    .venv/bin/python -m bench.round [--prompts 16] [--n 4] [--max-new-tokens 64] [--pairs 256]

Targets on the 2-core machine: whole round < 10 min, peak RSS < 8 GB, generation within 1.2x
of the floor. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    database_recreate,
    database_url_with_name,
    fmt,
    peak_rss_mb,
    print_table,
)
from bench.round_generation import BENCH_PROMPTS  # noqa: E402

DB_NAME = "bench_round"
HH_FILE = Path(
    os.environ.get(
        "HH_RLHF_FILE",
        str(Path(__file__).resolve().parents[1] / "tests" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"),
    )
)


def _promote_by_hand_if_gated(after, rounds_service) -> bool:
    """The round stopped at its reward step because the promotion gate kept its new reward model
    out (a timing run trains on a few hundred pairs): promote it by hand, as ops would (recorded
    as a gate override), and retry the round from that step. True when it did."""
    from training.models import RewardModel
    from training.services.reward_models import reward_model_promote

    run = after.reward_run
    if after.state != "failed" or after.step != "reward" or run is None:
        return False
    run.refresh_from_db()
    if run.status != RewardModel.Status.SUCCEEDED or run.is_active:
        return False
    print(
        f"bench: reward model v{run.version} gated ({run.promotion_note}); promoted by hand", file=sys.stderr
    )
    reward_model_promote(run_id=run.pk)
    rounds_service.round_retry(round_id=after.pk)
    return True


class RssSampler:
    """Peak resident memory of this process per phase (sampled every 50 ms in a thread):
    ru_maxrss only knows the peak of the whole run."""

    def __init__(self, interval: float = 0.05):
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss

    def peak_mb(self) -> float:
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak / 2**20

    def stop(self) -> None:
        self._stop.set()


def prepare_database(base_url: str) -> str:
    database_recreate(base_url, DB_NAME)
    return database_url_with_name(base_url, DB_NAME)


def hh_lines(count: int) -> list[str]:
    lines = []
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                lines.append(line)
            if len(lines) >= count:
                break
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=256, help="HH-RLHF pairs imported for the reward model")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call")
    args = parser.parse_args(argv)

    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    os.environ["DATABASE_URL"] = prepare_database(base_url)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/8")  # channel layer for live events
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("VOTE_FLOOR_MS", "0")  # simulated votes come at once
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    models_dir = Path(tempfile.mkdtemp(prefix="bench-round-models-"))
    from training.ml.smollm import default_policy_dir

    started = time.perf_counter()
    base = default_policy_dir(REPO / "var" / "models")  # converted once, reused
    convert_s = time.perf_counter() - started
    os.environ["POLICY_BASE"] = str(base)
    os.environ["MODELS_DIR"] = str(models_dir)
    os.environ["GENERATION_BATCH_SIZE"] = str(args.batch_size)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    import torch
    from django.conf import settings

    from annotation.models import Project, Prompt
    from annotation.services.preference_imports import preferences_import
    from annotation.services.prompt_imports import prompts_import
    from training.models import RLHFRound, RoundCandidate
    from training.services import rounds as rounds_service
    from training.services.policies import policy_base_ensure
    from training.services.schedules import round_settings_update

    project = Project.objects.create(name="Bench round", slug="bench-round", overlap=1)
    prompts_import(project=project, lines=[json.dumps({"prompt": p}) for p in BENCH_PROMPTS[: args.prompts]])
    preferences_import(project=project, lines=hh_lines(args.pairs), fmt="hh")
    # The pool is the project's prompts: keep only the bench prompts in it for a fixed workload.
    round_settings_update(
        project=project,
        prompts_per_round=args.prompts,
        candidates_per_prompt=args.n,
        max_new_tokens=args.max_new_tokens,
        temperature=0.8,
        pairs_to_publish=args.prompts,
        reward_config={"epochs": 1, "batch_size": 16, "max_length": 256, "heldout_fraction": 0.1},
        policy_gate="always",  # a timing run: the checkpoint becomes current without an evaluation
    )
    bench_ids = set(
        Prompt.objects.filter(project=project, metadata__pool="import").values_list("pk", flat=True)
    )

    sampler = RssSampler()
    # Warm up the generation model the round will use (first generate call of a process).
    policy = policy_base_ensure(project=project)
    backend, _ = rounds_service.generation_backend(policy)
    warm = time.perf_counter()
    from training.ml.policy import GenerationParams

    params = GenerationParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=0.8)
    batches = backend.prepare_batches([[{"role": "user", "content": BENCH_PROMPTS[0]}]], params)
    backend.generate_batch(batches[0], GenerationParams(n=args.n, max_new_tokens=8), seed=0)
    warm_s = time.perf_counter() - warm

    r, _ = rounds_service.round_start(project=project, enqueue=False)
    # Sample from the bench prompts only (the imported HH pairs' prompts are in the pool too).
    r.prompt_ids = sorted(bench_ids)[: args.prompts]
    RLHFRound.objects.filter(pk=r.pk).update(prompt_ids=r.prompt_ids)

    rows, step_seconds = [], {}
    round_started = time.perf_counter()
    while True:
        current = RLHFRound.objects.get(pk=r.pk)
        if current.is_finished:
            break
        state = current.state
        sampler.reset()
        t0 = time.perf_counter()
        after = rounds_service.round_advance(round_id=r.pk)
        seconds = time.perf_counter() - t0
        step = state if state != "queued" else "reward"
        step_seconds[step] = step_seconds.get(step, 0.0) + seconds
        rows.append([step, fmt(seconds), fmt(sampler.peak_mb(), 0)])
        if _promote_by_hand_if_gated(after, rounds_service):
            continue  # the timing bench trains on few pairs: ops' override, then the round goes on
        if after.state in ("failed", "cancelled"):
            print(f"round {after.state} in {after.failed_step}: {after.error}", file=sys.stderr)
            return 1
    total_s = time.perf_counter() - round_started
    done = RLHFRound.objects.get(pk=r.pk)

    # The floor: plain model.generate on the generating step's batches, same seeds.
    sampler.reset()
    base_backend, backend_name = rounds_service.generation_backend(done.policy_in)
    messages = dict(Prompt.objects.filter(pk__in=done.prompt_ids).values_list("pk", "messages"))
    chunks = rounds_service.generation_chunks(
        done,
        list(done.prompt_ids),
        messages,
        per_chunk=rounds_service.prompts_per_chunk(backend_name, params.n),
        sampled_from="policy_in",
    )
    base_backend.generate_batch(
        batches[0], GenerationParams(n=args.n, max_new_tokens=8), seed=0
    )  # warm again
    kwargs = base_backend.generate_kwargs(params)
    floor_started = time.perf_counter()
    floor_tokens = 0
    for chunk, seed in chunks:
        (batch,) = base_backend.prepare_batches([messages[pid] for pid in chunk], params)
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(seed)
            out = base_backend.model.generate(**batch.inputs, **kwargs)
        floor_tokens += out[:, batch.inputs["input_ids"].shape[1] :].numel()
    floor_s = time.perf_counter() - floor_started
    rows.append(["(floor: plain model.generate)", fmt(floor_s), fmt(sampler.peak_mb(), 0)])
    sampler.stop()

    generate_s = step_seconds["generating"]
    peak = peak_rss_mb()
    m = done.metrics
    print(
        f"round {done.number}: {args.prompts} prompts x {args.n} candidates x {args.max_new_tokens} new tokens, "
        f"{args.batch_size} sequences per generate call, torch threads {torch.get_num_threads()}, "
        f"{RoundCandidate.objects.filter(round=done).count()} candidates (old + new policy), "
        f"{m.get('published_pairs')} pairs published, DPO {m.get('dpo', {}).get('steps')} steps on "
        f"{m.get('dpo', {}).get('reward_pairs')} reward pairs"
    )
    print(
        f"reward model v{done.reward_model.version if done.reward_model else '-'} trained in the round on "
        f"{args.pairs} HH-RLHF pairs; base conversion check {convert_s:.1f} s; warm-up {warm_s:.1f} s (not in the round)"
    )
    print(
        f"metrics: mean reward {fmt(m.get('mean_reward'), 3)}, mean toxicity {fmt(m.get('mean_toxicity'), 3)}, "
        f"blocked {fmt(m.get('blocked_rate'), 3)}, KL {fmt(m.get('kl_to_reference'), 3)}, "
        f"tokens {fmt(m.get('mean_response_tokens'), 1)}"
    )
    print_table(["step", "seconds", "peak RSS MiB"], rows)
    print(
        f"targets: round < 600 s ({'ok' if total_s < 600 else 'MISSED'}), peak RSS < 8192 MiB "
        f"({'ok' if peak < 8192 else 'MISSED'}), generation <= 1.2x floor "
        f"({'ok' if generate_s / floor_s <= 1.2 else 'MISSED'}); {settings.GENERATION_BATCH_SIZE} seq/batch"
    )
    print(
        f"bench round: total_s={total_s:.1f} generate_s={generate_s:.1f} floor_generate_s={floor_s:.1f} "
        f"ratio_to_floor={generate_s / floor_s:.2f} peak_rss_mb={peak:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
