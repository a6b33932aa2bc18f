"""Do rounds improve the policy? Three online rounds with the defaults, judged by an oracle.

The HH-RLHF harmless file is split by OPENING QUESTION into disjoint sets: judge-training
pairs, project pairs (imported as the project's first votes; they are also the harm model's
harmlessness pairs), round prompts (the round prompt pool) and held-out evaluation prompts.
The oracle is a reward model (MiniLM, Bradley–Terry) trained on the judge-training pairs only.
Simulated raters (training.ml.judges.SimulatedJudge: 75 % agreement with the oracle, 0.55 left
bias) vote on each round's published pairs through the real queue (lease, submit), k = 1.
Rounds run in this process through the service the Celery task calls (`round_advance`), with
the project's defaults except `policy_gate="always"` (the bench measures instead of gating).

Then the offline baseline (RLHFlow: online iterative vs offline DPO): one DPO update of the
base on the same number of pairs, every one sampled from the BASE policy (on the rounds'
prompts) and labelled with the same shaped reward (the last round's reward model).

Evaluation: for the base and every checkpoint, `--eval-samples` responses per held-out prompt
(same seeds), each scored by the noise-free oracle; win rate vs the base's sample of the same
index (ties half) with a 95 % bootstrap interval over prompts (training.ml.stats); proxy reward
(the project's last reward model, z units), KL to the reference (k3 on the checkpoint's own
samples), unsafe fraction (calibrated harm model p > 0.5, Wilson interval), truncated fraction.
The ceiling row: best-of-n of the base's samples under the project's reward model, judged by
the oracle against the base's samples (what a perfect policy update towards the project's
reward model could reach).

    .venv/bin/python -m bench.loop                       # the issue's scale (slow on 2 cores)
    .venv/bin/python -m bench.loop --small               # a smoke run: minutes

Then bench/loop_report.py's table on the same samples: the oracle's win rate controlled for
length and on the pairs where both responses ended, and a judge of another family (bag of
words); `--dump` keeps the samples so that report can be re-run alone. And
bench/loop_candidates.py's table: how often each round's shaped reward agreed with the oracle
on the round's own candidates (what limits the update).

Last line: `bench loop: winrate_r1=... ci_low_r3=... offline_winrate=... unsafe_r0=...
unsafe_r3=... truncated_r3=... total_s=... peak_rss_mb=...`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    HH_FILE,
    database_recreate,
    database_url_with_name,
    duel,
    fmt,
    hh_parse,
    peak_rss_mb,
    print_table,
)

DB_NAME = "bench_loop"
HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant:"


def opening_question(transcript: str) -> str:
    start = transcript.find(HUMAN)
    rest = transcript[start + len(HUMAN) :] if start >= 0 else transcript
    end = rest.find(ASSISTANT)
    return (rest[:end] if end >= 0 else rest).strip()


def hh_split(args) -> dict[str, list]:
    """Disjoint sets by opening question (seeded shuffle of the questions)."""
    groups: dict[str, list[str]] = {}
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                q = opening_question(json.loads(line)["chosen"])
                if q:
                    groups.setdefault(q, []).append(line)
    questions = sorted(groups)
    random.Random(args.seed).shuffle(questions)
    eval_q = questions[: args.eval_prompts]
    round_q = questions[args.eval_prompts : args.eval_prompts + args.round_prompts]
    rest = questions[args.eval_prompts + args.round_prompts :]
    judge, project = [], []
    for i, q in enumerate(rest):  # alternate questions between the two pair sets until both are full
        if len(judge) < args.judge_pairs and (i % 2 == 0 or len(project) >= args.project_pairs):
            judge.extend(groups[q])
        elif len(project) < args.project_pairs:
            project.extend(groups[q])
    return {
        "eval": eval_q,
        "round": round_q,
        "judge": judge[: args.judge_pairs],
        "project": project[: args.project_pairs],
    }


def oracle_train(args, lines: list[str], out: Path):
    """The oracle: a reward model trained on the judge-training pairs only (own loop, MiniLM)."""
    from training.ml.records import PreferencePair
    from training.ml.reward import RewardConfig, train_reward_model

    pairs = [
        PreferencePair(
            prompt=r["messages"], chosen=r["chosen"], rejected=r["rejected"], pair_id=str(r["index"])
        )
        for r in hh_parse(lines)
    ]
    config = RewardConfig(
        epochs=args.rm_epochs, batch_size=16, max_length=args.rm_max_length, heldout_fraction=0.1
    )
    result = train_reward_model(pairs, config, out)
    return result


def oracle_row(oracle_project, result):
    from training.ml.checkpoints import dir_sha256
    from training.models import RewardModel

    return RewardModel.objects.create(
        project=oracle_project,
        version=1,
        backbone="oracle (MiniLM)",
        status="succeeded",
        artefact_path=str(result.model_dir),
        artefact_sha256=dir_sha256(result.model_dir),
        metrics=json.loads(json.dumps(result.metrics, default=str)),
        heldout_accuracy=result.metrics.get("heldout_accuracy"),
    )


def judges_make(oracle_rm, args):
    from training.services.judges import judge_create

    oracle = judge_create(name="oracle", kind="reward_model", reward_model=oracle_rm)
    sim = judge_create(
        name="sim",
        kind="simulated",
        base=oracle,
        params={"agreement": 0.75, "left_bias": 0.55, "seed": args.seed},
    )
    return oracle, sim


def round_one(project, sim, args, rounds_service):
    from bench.round import _promote_by_hand_if_gated
    from training.models import RLHFRound
    from training.services.judges import judge_run_create, judge_run_execute

    r, _ = rounds_service.round_start(
        project=project, enqueue=False, seed=args.seed + RLHFRound.objects.filter(project=project).count()
    )
    while True:
        current = RLHFRound.objects.get(pk=r.pk)
        if current.is_finished:
            break
        after = rounds_service.round_advance(round_id=r.pk)
        if _promote_by_hand_if_gated(after, rounds_service):
            continue
        if after.state in ("failed", "cancelled"):
            raise SystemExit(f"round {after.number} {after.state} in {after.failed_step}: {after.error}")
    done = RLHFRound.objects.get(pk=r.pk)
    published = done.metrics.get("published_pairs", 0)
    votes = 0
    if published:
        run = judge_run_create(project=project, judge=sim, raters=1, votes=published, enqueue=False)
        judge_run_execute(run_id=run.pk)
        from annotation.models import Preference

        votes = Preference.objects.filter(comparison__round_id=done.pk).count()
    return done, votes


def offline_baseline(project, rounds, args, models_dir: Path):
    from training.ml.dpo import dpo_update
    from training.services.rounds.steps.updating import _dpo_config

    pairs, want, generate_s = offline_pairs(project, rounds, args)
    base = rounds[0].policy_in
    t0 = time.perf_counter()
    result = dpo_update(base.path, base.path, pairs, _dpo_config(rounds[-1]), models_dir / "offline")
    return result.model_dir, len(pairs), want, time.perf_counter() - t0 + generate_s


def offline_pairs(project, rounds, args, *, sample_more: bool = True):
    """As many DPO pairs as the rounds trained on (at most one a prompt), every one sampled from
    the base on the rounds' prompts: best vs worst by the last round's shaped reward, blocked and
    truncated candidates handled as the round handles them. (pairs, pairs wanted, seconds spent
    sampling). `sample_more=False`: round 1's candidates only (no sampling)."""
    from annotation.models import Prompt
    from training.ml.dpo import PolicyPair
    from training.ml.generation import LocalTransformersBackend
    from training.ml.pair_selection import Candidate, best_vs_worst
    from training.ml.policy import GenerationParams
    from training.ml.round_safety import harm_may_block
    from training.ml.safety import load_toxicity
    from training.ml.shaping import shaped_terms
    from training.models import RoundCandidate
    from training.services.scoring import reward_score_normalised

    last = rounds[-1]
    want = sum(
        (r.metrics.get("dpo") or {}).get("reward_pairs", 0)
        + (r.metrics.get("dpo") or {}).get("human_pairs", 0)
        for r in rounds
    )
    base = rounds[0].policy_in
    c = last.config
    params = GenerationParams(n=int(c["candidates_per_prompt"]), temperature=float(c["temperature"]), top_p=float(c["top_p"]),
                              max_new_tokens=int(c["max_new_tokens"]), seed=args.seed + 99)  # fmt: skip
    # Round 1's candidates are base samples already; the other rounds' prompts are sampled here.
    groups: list[tuple[list, list[tuple[str, bool]]]] = []
    first = rounds[0]
    by_prompt: dict[int, list] = {}
    for cand in RoundCandidate.objects.filter(round=first, sampled_from="policy_in").select_related(
        "response", "prompt"
    ):
        by_prompt.setdefault(cand.prompt_id, [cand.prompt.messages, []])[1].append(
            (cand.response.text, cand.finish_reason == "length")
        )
    groups.extend((m, cands) for m, cands in by_prompt.values())
    more = [pid for r in rounds[1:] for pid in r.prompt_ids]
    generate_s = 0.0
    if sample_more and more and len(groups) < want:
        backend = LocalTransformersBackend(base.path, batch_size=args.batch_size)
        messages = dict(Prompt.objects.filter(pk__in=more).values_list("pk", "messages"))
        t0 = time.perf_counter()
        out = backend.generate([messages[pid] for pid in more], params)
        generate_s = time.perf_counter() - t0
        groups.extend(
            (messages[pid], [(x.text, x.finish_reason == "length") for x in g])
            for pid, g in zip(more, out, strict=True)
        )
        del backend
    # The λ the last round shaped with (its metrics: with an unsafe budget it is the round's dual step).
    lam = float(last.metrics.get("toxicity_lambda", c.get("toxicity_lambda", 1.0)))
    eos_penalty = float(c.get("missing_eos_penalty", 1.0))
    harm = load_toxicity(last.reward_model.safety_path or None)
    # Blocked as the round blocks: by p(unsafe) only when its harm model may (round_safety).
    may_block = harm_may_block(last.reward_model.safety_source, last.reward_model.safety_metrics)["blocks"]
    threshold = float(c["toxicity_threshold"]) if may_block else math.inf
    pairs = []
    for messages, cands in groups:
        texts = [t for t, _ in cands]
        rewards, norm = reward_score_normalised(
            project=project.pk, prompts=[messages] * len(texts), responses=texts
        )
        p_unsafe = harm.score([messages] * len(texts), texts)
        scored = []
        for i, ((text, truncated), rw, p) in enumerate(zip(cands, rewards, p_unsafe, strict=True)):
            t = shaped_terms(
                score=rw, p_unsafe=p, truncated=truncated, norm=norm, lam=lam, missing_eos_penalty=eos_penalty
            )
            scored.append(Candidate(i, text, t.shaped, i, p > threshold, truncated))
        pair = best_vs_worst(scored)
        if pair is not None:
            chosen, rejected = pair
            pairs.append(
                PolicyPair(
                    prompt=messages,
                    chosen=chosen.text,
                    rejected=rejected.text,
                    chosen_truncated=chosen.truncated,
                    rejected_truncated=rejected.truncated,
                )
            )
    return pairs[: max(1, want)], want, generate_s


def eval_samples(path, prompts: list[list[dict]], args, max_new_tokens: int):
    from training.ml.generation import LocalTransformersBackend
    from training.ml.policy import GenerationParams

    backend = LocalTransformersBackend(path, batch_size=args.batch_size)
    params = GenerationParams(
        n=args.eval_samples, temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens, seed=args.seed + 7
    )
    groups = backend.generate(prompts, params)
    return backend, groups


def evaluate_all(
    checkpoints: dict[str, str], base_path: str, prompts, project, oracle_path, harm_dir, args, max_new_tokens
):
    """Per checkpoint: samples, oracle scores, proxy z, unsafe, truncated, KL vs the base."""
    from training.ml.generation import sequence_logprobs
    from training.ml.policy import load_policy
    from training.ml.reward import RewardScorer
    from training.ml.round_metrics import kl_k3
    from training.ml.safety import load_toxicity
    from training.services.scoring import reward_score_normalised

    oracle = RewardScorer.load(oracle_path)
    harm = load_toxicity(harm_dir or None)
    base_model, base_tok = load_policy(base_path)
    out = {}
    for name, path in checkpoints.items():
        t0 = time.perf_counter()
        backend, groups = eval_samples(path, prompts, args, max_new_tokens)
        flat_prompts = [prompts[i] for i, g in enumerate(groups) for _ in g]
        flat = [c for g in groups for c in g]
        texts = [c.text for c in flat]
        eos = [c.finish_reason == "stop" for c in flat]
        own = sequence_logprobs(backend.model, backend.tokenizer, flat_prompts, texts, add_eos=eos)
        ref = (
            own
            if name == "base"
            else sequence_logprobs(base_model, base_tok, flat_prompts, texts, add_eos=eos)
        )
        del backend
        proxy, _norm = reward_score_normalised(project=project.pk, prompts=flat_prompts, responses=texts)
        out[name] = {
            "oracle": oracle.score(flat_prompts, texts),
            "proxy": [_norm.z(x) for x in proxy],
            "unsafe": [p > 0.5 for p in harm.score(flat_prompts, texts)],
            "truncated": [c.finish_reason == "length" for c in flat],
            "tokens": [c.num_tokens for c in flat],
            "text": texts,
            "kl": [kl_k3(a, b) for a, b in zip(own, ref, strict=True)],
            "prompt": [i for i, g in enumerate(groups) for _ in g],
            "seconds": time.perf_counter() - t0,
        }
    return out


def win_rate(ours: dict, base: dict):
    from training.ml.stats import win_rate_interval

    outcomes = [duel(a, b) for a, b in zip(ours["oracle"], base["oracle"], strict=True)]
    return win_rate_interval(outcomes, ours["prompt"], resamples=2000, seed=0)


def best_of_n_ceiling(base: dict, args):
    """Best of the base's n samples per prompt under the project's reward model (z), judged by
    the oracle against each of the base's samples of that prompt."""
    from training.ml.stats import win_rate_interval

    by_prompt: dict[int, list[int]] = {}
    for i, p in enumerate(base["prompt"]):
        by_prompt.setdefault(p, []).append(i)
    outcomes, groups = [], []
    for p, idx in by_prompt.items():
        best = max(idx, key=lambda i: base["proxy"][i])
        for j in idx:
            a, b = base["oracle"][best], base["oracle"][j]
            outcomes.append(duel(a, b))
            groups.append(p)
    return win_rate_interval(outcomes, groups, resamples=2000, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--small", action="store_true", help="smoke scale: few prompts and pairs, short responses"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--judge-pairs", type=int, default=800)
    parser.add_argument("--project-pairs", type=int, default=400)
    parser.add_argument("--round-prompts", type=int, default=240, help="round prompt pool (questions)")
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--prompts-per-round", type=int, default=None, help="default: the project's default")
    parser.add_argument(
        "--budget",
        type=int,
        default=64,
        help="pairs_to_publish: pairs published per round (>= 64 in the issue)",
    )
    parser.add_argument("--n", type=int, default=None, help="candidates_per_prompt (default: the project's)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the project's")
    parser.add_argument("--rm-epochs", type=int, default=1)
    parser.add_argument("--rm-max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call")
    parser.add_argument("--learning-rate", type=float, default=None, help="DPO lr (default: the project's)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--dump",
        default=None,
        help="JSON file for the evaluation samples and their scores (default: var/bench/loop-<time>.json)",
    )
    parser.add_argument(
        "--strategy",
        default=None,
        help="pair selection: new_vs_old | uncertain | random (default: the project's)",
    )
    args = parser.parse_args(argv)
    if args.small:
        args.judge_pairs, args.project_pairs, args.round_prompts = 240, 120, 24
        args.eval_prompts, args.eval_samples, args.budget = 6, 2, 6
        args.prompts_per_round = args.prompts_per_round or 6
        args.n = args.n or 2
        args.max_new_tokens = args.max_new_tokens or 48
    if args.prompts_per_round is None:
        args.prompts_per_round = max(args.budget, 64)

    started = time.perf_counter()
    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    database_recreate(base_url, DB_NAME)
    os.environ["DATABASE_URL"] = database_url_with_name(base_url, DB_NAME)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/8")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    models_dir = Path(tempfile.mkdtemp(prefix="bench-loop-models-"))
    from training.ml.smollm import default_policy_dir

    base_dir = default_policy_dir(REPO / "var" / "models")
    os.environ["POLICY_BASE"] = str(base_dir)
    os.environ["MODELS_DIR"] = str(models_dir)
    os.environ["GENERATION_BATCH_SIZE"] = str(args.batch_size)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import torch

    from annotation.models import Project
    from annotation.services.preference_imports import preferences_import
    from annotation.services.prompt_imports import prompts_import
    from training.models import RoundSettings
    from training.services import rounds as rounds_service
    from training.services.schedules import round_settings_update

    split = hh_split(args)
    t0 = time.perf_counter()
    oracle_project = Project.objects.create(name="Bench loop oracle", slug="bench-loop-oracle", overlap=1)
    oracle_result = oracle_train(args, split["judge"], models_dir / "oracle")
    oracle_rm = oracle_row(oracle_project, oracle_result)
    oracle_s = time.perf_counter() - t0
    _, sim = judges_make(oracle_rm, args)

    project = Project.objects.create(name="Bench loop", slug="bench-loop", overlap=1)
    preferences_import(project=project, lines=split["project"], fmt="hh")
    prompts_import(
        project=project, lines=[json.dumps({"prompt": q}) for q in split["round"]], purpose="round"
    )
    defaults = {
        f.name: f.default
        for f in RoundSettings._meta.fields
        if f.name in ("candidates_per_prompt", "max_new_tokens", "learning_rate")
    }
    overrides = {
        "prompts_per_round": args.prompts_per_round,
        "pairs_to_publish": args.budget,
        "policy_gate": "always",
    }
    overrides["reward_config"] = {
        "epochs": args.rm_epochs,
        "batch_size": 16,
        "max_length": args.rm_max_length,
        "heldout_fraction": 0.1,
    }
    for key, value in (
        ("candidates_per_prompt", args.n),
        ("max_new_tokens", args.max_new_tokens),
        ("learning_rate", args.learning_rate),
        ("strategy", args.strategy),
    ):
        if value is not None:
            overrides[key] = value
    round_settings_update(project=project, **overrides)
    settings_used = {**defaults, **{k: v for k, v in overrides.items() if k != "reward_config"}}

    rounds, votes = [], []
    for _ in range(args.rounds):
        done, v = round_one(project, sim, args, rounds_service)
        rounds.append(done)
        votes.append(v)
        print(
            f"round {done.number}: {json.dumps({k: done.metrics.get(k) for k in ('mean_reward_z', 'mean_harm_term', 'truncated_rate', 'blocked_rate', 'published_pairs', 'dpo')}, default=str)}",
            file=sys.stderr,
        )
    rounds_service.backend_cache_clear()
    offline_dir, offline_n, offline_want, offline_s = offline_baseline(project, rounds, args, models_dir)

    eval_prompts = [[{"role": "user", "content": q}] for q in split["eval"]]
    base_path = rounds[0].policy_in.path
    checkpoints = {
        "base": base_path,
        **{f"r{r.number}": r.policy_out.path for r in rounds},
        "offline": str(offline_dir),
    }
    last_rm = rounds[-1].reward_model
    harm_dir = last_rm.safety_path if last_rm.safety_source == "learned" else ""
    max_tokens = int(rounds[-1].config["max_new_tokens"])
    results = evaluate_all(
        checkpoints, base_path, eval_prompts, project, oracle_result.model_dir, harm_dir, args, max_tokens
    )

    dump = Path(args.dump or REPO / "var" / "bench" / f"loop-{time.strftime('%Y%m%d-%H%M%S')}.json")
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_text(
        json.dumps(
            {
                "args": vars(args),
                "eval_prompts": split["eval"],
                "judge_lines": split["judge"],
                "results": results,
            },
            default=float,
        )
    )
    print(f"samples and scores: {dump}", file=sys.stderr)

    from training.ml.stats import wilson_interval

    rows, line = [], {}
    base = results["base"]
    for name, res in results.items():
        wr = win_rate(res, base) if name != "base" else None
        unsafe = wilson_interval(sum(res["unsafe"]), len(res["unsafe"]))
        trunc = sum(res["truncated"]) / len(res["truncated"])
        r = next((x for x in rounds if f"r{x.number}" == name), None)
        dpo = (r.metrics.get("dpo") or {}) if r else {}
        step_s = (
            (r.steps.get("updating", {}).get("seconds") or 0) / max(1, dpo.get("steps") or 1) if r else None
        )
        rows.append([
            name,
            f"{wr.value:.3f} [{wr.low:.3f}, {wr.high:.3f}]" if wr else "—",
            fmt(sum(res["proxy"]) / len(res["proxy"]), 3),
            fmt(sum(res["kl"]) / len(res["kl"]), 3),
            f"{unsafe.value:.3f} [{unsafe.low:.3f}, {unsafe.high:.3f}]",
            fmt(trunc, 3),
            fmt(step_s, 1) if step_s is not None else "—",
            fmt(r.metrics.get("truncated_rate"), 3) if r else "—",
            f"{dpo.get('reward_pairs', '—')}+{dpo.get('human_pairs', '—')}" if r else "—",
        ])  # fmt: skip
        line[name] = (wr, unsafe.value, trunc)
    ceiling = best_of_n_ceiling(base, args)
    total_s = time.perf_counter() - started
    peak = peak_rss_mb()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(
        f"settings: {json.dumps(settings_used, default=str)}; rounds {args.rounds}; eval {len(eval_prompts)} prompts x {args.eval_samples} samples; torch threads {torch.get_num_threads()}"
    )
    print(
        f"data: judge pairs {len(split['judge'])}, project pairs {len(split['project'])}, round prompts {len(split['round'])}, eval prompts {len(split['eval'])} (disjoint by opening question)"
    )
    print(
        f"oracle: held-out accuracy {fmt(oracle_result.metrics.get('heldout_accuracy'), 3)} on {oracle_result.metrics.get('test_pairs')} pairs, trained in {oracle_s:.0f} s"
    )
    hm = last_rm.safety_metrics or {}
    print(
        f"harm model (last round's): source {last_rm.safety_source}, held-out AUC {fmt(hm.get('heldout_auc'), 3)}, ECE {fmt(hm.get('heldout_ece'), 3)}, pair accuracy {fmt(hm.get('heldout_pair_accuracy'), 3)}"
    )
    print(
        f"votes by simulated raters per round: {votes}; offline baseline: {offline_n} pairs (online used {offline_want}), {offline_s:.0f} s"
    )
    print_table(
        [
            "policy",
            "oracle win rate vs base [95% CI]",
            "proxy z",
            "KL",
            "unsafe [95% CI]",
            "truncated",
            "s/DPO step",
            "round trunc",
            "pairs fresh+human",
        ],
        rows,
    )
    print(
        f"ceiling: best-of-{args.eval_samples} of the base under the project's reward model, oracle win rate vs base = {ceiling.value:.3f} [{ceiling.low:.3f}, {ceiling.high:.3f}]"
    )
    from bench.loop_report import report

    print(report(results, split["judge"]))
    from bench.loop_candidates import report as candidates_report

    print(candidates_report(project, str(oracle_result.model_dir)))
    print(f"load: {load}")
    wr = {k: v[0] for k, v in line.items()}
    last = f"r{args.rounds}"
    print(
        "bench loop: "
        + " ".join(f"winrate_r{i}={wr[f'r{i}'].value:.3f}" for i in range(1, args.rounds + 1))
        + f" ci_low_r{args.rounds}={wr[last].low:.3f} offline_winrate={wr['offline'].value:.3f}"
        f" unsafe_r0={line['base'][1]:.3f} unsafe_r{args.rounds}={line[last][1]:.3f}"
        f" truncated_r{args.rounds}={line[last][2]:.3f} total_s={total_s:.0f} peak_rss_mb={peak:.0f}"
    )
    return 0 if not math.isnan(total_s) else 1


if __name__ == "__main__":
    sys.exit(main())
