"""Rater-quality benchmark (issue 12): simulated raters through the real queue on HH-RLHF.

    .venv/bin/python bench/raters.py            # 720 pairs to rate, 60 gold, 512 held out
    .venv/bin/python bench/raters.py --quick    # smoke run: 300 pairs, 40 gold, 256 held out

40 seeded raters vote through `assignment_next` / `preference_submit` (k = 3, one gold pair in
20) on the HH-RLHF harmless test pairs, with each pair's real label as the truth (its A/B sides
drawn at random): 28 careful (right 85 % of the time, human reading speed), 4 random clickers,
4 always-left, 4 too fast (right 60 %, three times faster than the reading time). A simulated
rater's time on task is written into their lease (leased_at moved back by the simulated
seconds) before they submit, so the server's own time on task is what the speed check reads.
Trust and states are refreshed by `quality_refresh` every 40 votes, as the beat task would.

Two runs over the same pairs and raters:
  quality on   gold mixed in, automatic pausing: detection (precision / recall of paused
               raters among the 12 bad ones, votes cast until paused), alpha.
  quality off  gold mixed in, no pausing (the baseline: every rater votes to the end). Reward
               models with the same budget are trained on its votes (one pair per vote, gold
               pairs left out) and scored on 512 held-out pairs (prompt-disjoint):
               clean     the careful raters' votes only
               all       every vote, unweighted
               trusted   the votes of raters whose trust is at least the project's default
                         review threshold (`min_trust` 0.5, the product's filter): rm_acc_trusted
               weighted  every vote weighted by its rater's trust (`vote_weights: trust`, the
                         product's weights: `rater_trusts` + `vote_weight`): rm_acc_weighted
               truth     one pair per rated comparison with its real label (the ceiling of the
                         budget; context only)

The reward-model budget (`--rm finetune`, the default): the product's trainer fine-tunes the
whole backbone (MiniLM) on each vote set for one epoch (`--rm-epochs`; every vote seen once,
8 pairs a step, 64 tokens a text from the end by default), seed 0: the budget that separates the
sets (30 min on the 2-core machine; bench/README.md). `--rm-steps N` fixes the number of steps
instead. `--rm head` (cheap, about 5 min, but it cannot tell the sets apart: even the true labels
reach 0.545 with it): the product's backbone (MiniLM, mean of its
token states, the product's pooling), FROZEN; every rated and held-out text is embedded once
(`--max-length` tokens from the end), and a linear Bradley–Terry head is fitted on the
embeddings (standardised on the rated texts) with the product's weighted loss
(`training.ml.reward.pair_losses` and `batch_loss_reduce`, strength margins included) plus a fixed L2 penalty, by
L-BFGS to convergence: convex, so the same votes give the same model, and every vote is seen.
Accuracies carry a 95 % Wilson interval over the held-out pairs; the differences between
variants a paired bootstrap interval over the same pairs.

Last line: `bench raters: flag_precision=<p> flag_recall=<r> votes_to_flag_p50=<v>
rm_acc_clean=<a> rm_acc_all=<b> rm_acc_trusted=<c> rm_acc_weighted=<d>`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import DEFAULT_DATABASE_URL, bench_database, fmt, hh_pairs, print_table  # noqa: E402

KINDS = (("careful", 28), ("random", 4), ("left", 4), ("too_fast", 4))
BAD = {"random", "left", "too_fast"}
REFRESH_EVERY = 40
MIN_TRUST = 0.5  # the project's default `trust_review`: under it a rater is under review


@dataclass
class SimRater:
    user: object
    kind: str
    speed: float  # this rater's own pace, a factor on the reading time
    votes: int = 0
    paused_at: int | None = None


def load_hh(seed: int) -> list[dict]:
    out = [{k: p[k] for k in ("messages", "chosen", "rejected")} for p in hh_pairs()]
    random.Random(seed).shuffle(out)
    return out


def _choice(sim: SimRater, truth: str, left: str, rng: random.Random) -> str:
    wrong = "b" if truth == "a" else "a"
    if sim.kind == "careful":
        return truth if rng.random() < 0.85 else wrong
    if sim.kind == "too_fast":
        return truth if rng.random() < 0.60 else wrong
    if sim.kind == "left":
        return left
    return rng.choice("ab")


def _seconds(sim: SimRater, chars: int, cps: float, rng: random.Random) -> float:
    reading = chars / cps
    if sim.kind == "too_fast":
        return reading / 3 * rng.lognormvariate(0, 0.15)
    return reading * sim.speed * rng.lognormvariate(0, 0.25)


def simulate(
    *, project, raters: list[SimRater], truth: dict, chars: dict, seed: int, refresh: bool, refused: list
) -> int:
    """Every rater votes until the queue has nothing for them; returns votes cast. A vote under
    the project's floor is refused (409 too_fast, counted in `refused[0]`) and cast again later."""
    from annotation.models import Assignment
    from annotation.quality.service import quality_refresh
    from annotation.services.queue import assignment_next, preference_submit
    from core.errors import ErrorCode, ServiceError

    rng = random.Random(seed)
    live = list(raters)
    cast = 0
    while live:
        rng.shuffle(live)
        for sim in list(live):
            lease = assignment_next(rater=sim.user, project=project)
            if lease is None:
                live.remove(sim)
                continue
            cid = lease.comparison.pk
            choice = _choice(sim, truth[cid], lease.assignment.left, rng)
            seconds = _seconds(sim, chars[cid], project.reading_cps, rng)
            for attempt in (0, 1):
                Assignment.objects.filter(pk=lease.assignment.pk).update(
                    leased_at=lease.assignment.leased_at - timedelta(seconds=seconds)
                )
                try:
                    preference_submit(
                        rater=sim.user, comparison_id=cid, choice=choice, strength=rng.choice((1, 2, 2, 3)),
                        idempotency_key=f"{sim.user.pk}-{cid}", client_ms=int(seconds * 1000),
                    )  # fmt: skip
                    break
                except ServiceError as err:  # under the project's floor: the rater waits, then votes
                    if err.code != ErrorCode.TOO_FAST or attempt:
                        raise
                    refused[0] += 1
                    seconds = project.vote_floor_ms / 1000 + 0.5
            sim.votes += 1
            cast += 1
            if refresh and cast % REFRESH_EVERY == 0:
                _refresh(project, raters, quality_refresh)
    if refresh:
        _refresh(project, raters, quality_refresh)
    return cast


def _refresh(project, raters, quality_refresh) -> None:
    from annotation.models import RaterState

    quality_refresh(project=project)
    paused = set(
        RaterState.objects.filter(project=project, state="paused").values_list("rater_id", flat=True)
    )
    for sim in raters:
        if sim.user.pk in paused and sim.paused_at is None:
            sim.paused_at = sim.votes


def setup_project(name: str, pairs: list[dict], gold: list[dict], *, quality: bool, seed: int):
    from django.contrib.auth.models import Group, User

    from annotation.models import Project
    from annotation.services.comparisons import ComparisonSpec, comparisons_create
    from annotation.services.members import project_members_add_all
    from core.roles import role_groups_ensure

    rng = random.Random(seed)
    project = Project.objects.create(
        name=name, slug=name, overlap=3, lease_seconds=600,
        gold_every=20, trust_pause=0.05 if quality else 0.0,
    )  # fmt: skip
    truth, chars, specs = {}, {}, []
    for i, p in enumerate(pairs + gold):
        a_is_chosen = rng.random() < 0.5
        a, b = (p["chosen"], p["rejected"]) if a_is_chosen else (p["rejected"], p["chosen"])
        is_gold = i >= len(pairs)
        specs.append(
            ComparisonSpec(
                messages=p["messages"],
                response_a=a,
                response_b=b,
                gold_choice=("a" if a_is_chosen else "b") if is_gold else "",
            )  # fmt: skip
        )
    comparisons = comparisons_create(project=project, specs=specs)
    # The truth of each pair: the side its chosen text was put on.
    source = pairs + gold
    for c, spec, p in zip(comparisons, specs, source, strict=False):
        truth[c.pk] = "a" if spec.response_a == p["chosen"] else "b"
        chars[c.pk] = sum(len(m["content"]) for m in p["messages"]) + len(p["chosen"]) + len(p["rejected"])
    role_groups_ensure()
    group = Group.objects.get(name="rater")
    raters = []
    n = 0
    for kind, count in KINDS:
        for _ in range(count):
            user = User.objects.create_user(username=f"{name}-{kind}-{n}")
            user.groups.add(group)
            raters.append(SimRater(user=user, kind=kind, speed=rng.uniform(0.8, 1.3)))
            n += 1
    # Raters rate only the projects they are members of (issue 15).
    project_members_add_all(project=project, users=[s.user for s in raters])
    return project, raters, truth, chars


def vote_pairs(project, keep, weight_of=None) -> list:
    """One PreferencePair per A/B vote on a non-gold pair whose rater `keep` admits, weighted by
    `weight_of(source, rater_id)` (None: every vote weighs 1)."""
    from annotation.models import Preference
    from training.ml.records import PreferencePair

    out = []
    rows = Preference.objects.filter(
        comparison__project=project, comparison__gold_choice="", choice__in=("a", "b")
    ).select_related("comparison__prompt", "comparison__response_a", "comparison__response_b")
    for v in rows.order_by("pk"):
        if not keep(v.rater_id):
            continue
        c = v.comparison
        a, b = c.response_a.text, c.response_b.text
        chosen, rejected = (a, b) if v.choice == "a" else (b, a)
        out.append(
            PreferencePair(
                prompt=c.prompt.messages,
                chosen=chosen,
                rejected=rejected,
                strength=v.strength,
                pair_id=str(v.pk),
                group=f"prompt-{c.prompt_id}",
                weight=weight_of(v.source, v.rater_id) if weight_of else 1.0,
            )  # fmt: skip
        )
    return out


def truth_pairs(project, truth: dict) -> list:
    """One pair per rated (non-gold) comparison with its real label (no strength)."""
    from annotation.models import Comparison
    from training.ml.records import PreferencePair

    out = []
    rows = Comparison.objects.filter(project=project, gold_choice="").select_related(
        "prompt", "response_a", "response_b"
    )
    for c in rows.order_by("pk"):
        a, b = c.response_a.text, c.response_b.text
        chosen, rejected = (a, b) if truth[c.pk] == "a" else (b, a)
        out.append(
            PreferencePair(prompt=c.prompt.messages, chosen=chosen, rejected=rejected, pair_id=str(c.pk))
        )
    return out


class FrozenHead:
    """The `--rm head` budget: frozen MiniLM embeddings (mean pooling) and a linear
    Bradley–Terry head per vote set, fitted with the product's weighted loss."""

    L2 = 1e-3  # fixed before any run (not tuned on the held-out pairs)

    def __init__(self, texts: list[str], *, max_length: int, threads: int):
        import torch

        from training.ml import backbones

        self.index = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        with backbones.torch_threads(threads):
            model, tokenizer = backbones.load_classifier(
                backbones.default_minilm_dir(), num_labels=1, what="bench backbone", pooling="mean"
            )
            model.score = torch.nn.Identity()  # the logits are the pooled embedding
            ids = backbones.encode(tokenizer, list(self.index), max_length)
            self.features = backbones.predict(model, ids, tokenizer.pad_token_id, batch_size=64)
        self.threads = threads

    def standardise(self, texts: list[str]) -> None:
        """Scale every feature by its mean and sd over `texts` (the rated texts only)."""
        rows = self.features[[self.index[t] for t in texts]]
        mean, sd = rows.mean(0), rows.std(0).clamp(min=1e-6)
        self.features = (self.features - mean) / sd

    def _xs(self, pairs):
        from training.ml.records import render_conversation

        chosen = [self.index[render_conversation(p.prompt, p.chosen)] for p in pairs]
        rejected = [self.index[render_conversation(p.prompt, p.rejected)] for p in pairs]
        return self.features[chosen], self.features[rejected]

    def fit(self, pairs):
        import torch

        from training.ml import backbones
        from training.ml.records import STRENGTH_MARGINS
        from training.ml.reward import batch_loss_reduce, pair_losses

        x_c, x_r = self._xs(pairs)
        margins = torch.tensor(
            [STRENGTH_MARGINS[p.strength - 1] if p.strength else 0.0 for p in pairs], dtype=torch.float32
        )
        ties = torch.zeros(len(pairs), dtype=torch.bool)
        weights = torch.tensor([p.weight for p in pairs], dtype=torch.float32)
        w = torch.zeros(x_c.shape[1], requires_grad=True)
        with backbones.torch_threads(self.threads):
            opt = torch.optim.LBFGS(
                [w], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                line_search_fn="strong_wolfe",
            )  # fmt: skip

            def closure():
                opt.zero_grad()
                losses = pair_losses(x_c @ w, x_r @ w, margins, ties, weights=weights)
                loss = batch_loss_reduce(losses, weights) + self.L2 * w.dot(w)
                loss.backward()
                return loss

            opt.step(closure)
        return w.detach()

    def correct(self, w, pairs) -> list[float]:
        x_c, x_r = self._xs(pairs)
        diff = (x_c - x_r) @ w
        return [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diff.tolist()]


def finetune_correct(votes, test_pairs, *, budget: dict, out: Path, label: str) -> list[float]:
    """The `--rm finetune` budget: the product's trainer for a fixed number of steps."""
    from training.ml.reward import RewardConfig, pair_correctness, train_reward_model

    config = RewardConfig(heldout_fraction=0.0, seed=0, **budget)
    result = train_reward_model(votes, config, out / label)
    return [1.0 if ok else 0.0 for ok in pair_correctness(result.model_dir, test_pairs, batch_size=64)]


def paired_difference(first: list[float], second: list[float], *, resamples: int = 2000, seed: int = 0):
    """(mean of first - second, low, high): a paired percentile bootstrap over the same pairs."""
    import numpy as np

    from training.ml.stats import percentile_interval

    diff = np.asarray(first) - np.asarray(second)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = percentile_interval(means)
    return float(diff.mean()), low, high


def detection(raters: list[SimRater]) -> dict:
    flagged = [s for s in raters if s.paused_at is not None]
    bad = [s for s in raters if s.kind in BAD]
    true_flags = [s for s in flagged if s.kind in BAD]
    return {
        "precision": len(true_flags) / len(flagged) if flagged else float("nan"),
        "recall": len(true_flags) / len(bad),
        "votes_to_flag_p50": statistics.median(s.paused_at for s in true_flags)
        if true_flags
        else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rm", choices=("head", "finetune"), default="finetune",
        help="reward-model budget: fine-tuning (default) or a linear head on frozen MiniLM embeddings",
    )  # fmt: skip
    parser.add_argument(
        "--max-length", type=int, default=None, help="tokens per text, from the end (finetune 64, head 128)"
    )
    parser.add_argument(
        "--rm-steps", type=int, default=None, help="--rm finetune: a fixed number of steps of 8 pairs"
    )
    parser.add_argument(
        "--rm-epochs", type=int, default=1,
        help="--rm finetune: epochs (every vote seen this many times) when --rm-steps is not given",
    )  # fmt: skip
    args = parser.parse_args()
    if args.max_length is None:
        args.max_length = 64 if args.rm == "finetune" else 128
    n_pool, n_gold, n_test = (300, 40, 256) if args.quick else (720, 60, 512)
    # `--rm finetune`: the same budget for every reward model: the product's trainer and backbone
    # (MiniLM), 8 pairs a step, one epoch (or `--rm-steps`; `--quick`: 20 steps).
    budget = {
        "max_length": args.max_length, "batch_size": 8, "epochs": args.rm_epochs,
        "max_steps": args.rm_steps or (20 if args.quick else None), "threads": args.threads, "eval_batch_size": 64,
    }  # fmt: skip

    with bench_database(args.database_url, "bench_raters") as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        run(args, n_pool, n_gold, n_test, budget)
        from django.db import connections

        connections.close_all()


def run(args, n_pool: int, n_gold: int, n_test: int, budget: dict) -> None:
    from annotation.models import RaterState
    from annotation.quality.compute import project_quality
    from annotation.quality.service import quality_refresh, speed_of, vote_records
    from training.ml.records import PreferencePair, prompt_group
    from training.ml.stats import wilson_interval
    from training.selectors import rater_trusts, untrusted_raters, vote_weight

    pairs = load_hh(args.seed)
    # Held-out pairs first, prompt-disjoint from everything rated.
    test, groups = [], set()
    for p in pairs:
        if len(test) < n_test:
            test.append(p)
            groups.add(prompt_group(p["messages"]))
    rest = [p for p in pairs[n_test:] if prompt_group(p["messages"]) not in groups]
    pool, gold = rest[:n_pool], rest[n_pool : n_pool + n_gold]
    test_pairs = [
        PreferencePair(prompt=p["messages"], chosen=p["chosen"], rejected=p["rejected"], pair_id=str(i))
        for i, p in enumerate(test)
    ]

    started = time.perf_counter()
    on, on_raters, on_truth, on_chars = setup_project("quality-on", pool, gold, quality=True, seed=args.seed)
    refused = [0]
    on_votes = simulate(
        project=on, raters=on_raters, truth=on_truth, chars=on_chars, seed=args.seed, refresh=True,
        refused=refused,
    )  # fmt: skip
    on_seconds = time.perf_counter() - started
    det = detection(on_raters)
    quality = project_quality(vote_records(project_id=on.pk), speed=speed_of(on))

    started = time.perf_counter()
    off, off_raters, off_truth, off_chars = setup_project(
        "quality-off", pool, gold, quality=False, seed=args.seed
    )
    off_votes = simulate(
        project=off, raters=off_raters, truth=off_truth, chars=off_chars, seed=args.seed, refresh=False,
        refused=refused,
    )  # fmt: skip
    quality_refresh(project=off)  # trust of every rater over the whole stream (states: never paused)
    off_seconds = time.perf_counter() - started
    excluded = set(untrusted_raters(project_id=off.pk, min_trust=MIN_TRUST))
    careful = {s.user.pk for s in off_raters if s.kind == "careful"}
    off_trust = dict(RaterState.objects.filter(project=off).values_list("rater_id", "trust"))

    rows = []
    for kind, _ in KINDS:
        sims = [s for s in on_raters if s.kind == kind]
        paused = [s for s in sims if s.paused_at is not None]
        states = RaterState.objects.filter(project=on, rater__in=[s.user for s in sims])
        trusts = [s.trust for s in states]
        rows.append(
            [
                kind, len(sims), len(paused), fmt(statistics.median([s.votes for s in sims]), 0),
                fmt(statistics.median([s.paused_at for s in paused]), 0) if paused else "-",
                fmt(statistics.median(trusts), 3) if trusts else "-",
                fmt(statistics.median(off_trust[s.user.pk] for s in off_raters if s.kind == kind), 3),
                sum(1 for s in off_raters if s.kind == kind and s.user.pk in excluded),
            ]
        )  # fmt: skip
    print(
        f"quality on: {on_votes} votes in {on_seconds:.0f} s; quality off: {off_votes} votes in {off_seconds:.0f} s;"
        f" {refused[0]} votes refused as too fast (under the project's floor) and cast again later"
    )
    print_table(
        [
            "kind",
            "raters",
            "paused",
            "votes p50",
            "votes to pause p50",
            "trust p50",
            "trust p50 (off run)",
            "left out (off run)",
        ],
        rows,
    )
    print(
        f"alpha ordinal {quality.alpha_ordinal:.3f}, nominal {quality.alpha_nominal:.3f} (quality-on run, "
        f"people's votes); detection precision {det['precision']:.3f} recall {det['recall']:.3f}"
    )

    rm_started = time.perf_counter()
    by_rater = rater_trusts(project_id=off.pk)  # what `vote_weights: trust` would queue a run with
    sets = {
        "clean": vote_pairs(off, lambda r: r in careful),
        "all": vote_pairs(off, lambda r: True),
        "trusted": vote_pairs(off, lambda r: r not in excluded),
        "weighted": vote_pairs(off, lambda r: True, lambda source, r: vote_weight(source, r, by_rater)),
    }
    if args.rm == "head":  # the budget's ceiling: context only (one more model is cheap here)
        sets["truth"] = truth_pairs(off, off_truth)
    correct: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    # A variant with exactly the votes and weights of an earlier one (the trust filter keeping
    # exactly the careful raters) gets the same model: trained once, reported under both names.
    same_as = {}
    for label, votes in sets.items():
        key = tuple((p.pair_id, p.weight) for p in votes)
        same_as[label] = next(k for k in sets if tuple((p.pair_id, p.weight) for p in sets[k]) == key)
    if args.rm == "head":
        from training.ml.records import render_conversation

        rated = [render_conversation(p.prompt, t) for p in sets["truth"] for t in (p.chosen, p.rejected)]
        held = [render_conversation(p.prompt, t) for p in test_pairs for t in (p.chosen, p.rejected)]
        t0 = time.perf_counter()
        head = FrozenHead(rated + held, max_length=args.max_length, threads=args.threads)
        head.standardise(rated)
        print(
            f"embedded {len(head.index)} texts ({args.max_length} tokens) in {time.perf_counter() - t0:.0f} s"
        )
        for label, votes in sets.items():
            t0 = time.perf_counter()
            correct[label] = head.correct(head.fit(votes), test_pairs)
            seconds[label] = time.perf_counter() - t0
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for label, votes in sets.items():
                if same_as[label] != label:
                    correct[label], seconds[label] = correct[same_as[label]], 0.0
                    continue
                t0 = time.perf_counter()
                correct[label] = finetune_correct(
                    votes, test_pairs, budget=budget, out=Path(tmp), label=label
                )
                seconds[label] = time.perf_counter() - t0
    acc = {label: wilson_interval(sum(c), len(c)) for label, c in correct.items()}
    rows = []
    for label, votes in sets.items():
        a = acc[label]
        weight = sum(p.weight for p in votes)
        same = f" (= {same_as[label]})" if same_as[label] != label else ""
        rows.append(
            [label + same, len(votes), fmt(weight, 1), f"{a.value:.4f}", f"[{a.low:.3f}, {a.high:.3f}]", fmt(seconds[label], 1)]
        )  # fmt: skip
    print(
        f"reward models ({args.rm} budget, {len(test_pairs)} held-out pairs, {time.perf_counter() - rm_started:.0f} s):"
    )
    print_table(["votes used", "pairs", "weight sum", "held-out accuracy", "95 % Wilson", "fit s"], rows)
    for first, second in (
        ("trusted", "all"), ("trusted", "clean"), ("weighted", "all"), ("weighted", "clean"), ("clean", "all"),
    ):  # fmt: skip
        d, low, high = paired_difference(correct[first], correct[second])
        print(
            f"{first} - {second}: {100 * d:+.1f} points (95 % paired bootstrap [{100 * low:+.1f}, {100 * high:+.1f}])"
        )
    print(
        f"bench raters: flag_precision={det['precision']:.3f} flag_recall={det['recall']:.3f} "
        f"votes_to_flag_p50={det['votes_to_flag_p50']:.0f} rm_acc_clean={acc['clean'].value:.4f} "
        f"rm_acc_all={acc['all'].value:.4f} rm_acc_trusted={acc['trusted'].value:.4f} "
        f"rm_acc_weighted={acc['weighted'].value:.4f}"
    )


if __name__ == "__main__":
    main()
