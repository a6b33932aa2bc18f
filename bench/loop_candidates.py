"""What the rounds trained on, judged by the oracle: how far can the shaped reward lead?

A DPO update can only move the policy towards the oracle as far as its pairs agree with the
oracle. For every round of bench/loop.py this reads the round's own candidates (sampled from
the round's input policy, scored by the round's reward model and harm model) from the bench
database and scores them with the oracle:

- agreement of the shaped reward with the oracle over every pair of candidates of the same
  prompt (the sign of the two differences; bootstrap interval over prompts), and of the reward
  model's z alone;
- the oracle's verdict on each prompt's best-vs-worst pair by shaped reward (what the update's
  fresh pairs are made of; Wilson interval);
- best-of-n: the shaped reward's best candidate against each of the prompt's candidates, by
  the oracle (the ceiling of a perfect update towards the shaped reward on these prompts);
- how often the oracle prefers a candidate that ended over one cut at the token limit (a
  judge blind to truncation gives 0.5).

    .venv/bin/python -m bench.loop_candidates      # after bench/loop.py, on its database

Last line: `bench loop_candidates: agree_r1=... best_worst_r1=... best_of_n_r1=... ...`.
"""

from __future__ import annotations

import os
import sys
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import duel, print_table  # noqa: E402


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _agreement(by_prompt: dict, key: str):
    """Per-pair agreement of `key` with the oracle, ties in either left out."""
    from training.ml.stats import win_rate_interval

    outcomes, groups = [], []
    for p, cands in by_prompt.items():
        for a, b in combinations(cands, 2):
            s, o = _sign(a[key] - b[key]), _sign(a["oracle"] - b["oracle"])
            if s and o:
                outcomes.append(1.0 if s == o else 0.0)
                groups.append(p)
    return win_rate_interval(outcomes, groups, resamples=2000, seed=0)


def _ended_preferred(by_prompt: dict):
    """How often the oracle scores the candidate that ended above the one cut at the token limit,
    over the pairs of the same prompt with one of each: a judge blind to truncation gives 0.5."""
    from training.ml.stats import win_rate_interval

    outcomes, groups = [], []
    for p, cands in by_prompt.items():
        for a, b in combinations(cands, 2):
            if a["ended"] != b["ended"]:
                done, cut = (a, b) if a["ended"] else (b, a)
                outcomes.append(duel(done["oracle"], cut["oracle"]))
                groups.append(p)
    return win_rate_interval(outcomes, groups, resamples=2000, seed=0)


def round_rows(project, oracle_path: str) -> tuple[list[list], dict]:
    from training.ml.reward import RewardScorer
    from training.ml.stats import wilson_interval, win_rate_interval
    from training.models import RLHFRound, RoundCandidate

    oracle = RewardScorer.load(oracle_path)
    rows, figures = [], {}
    for rnd in RLHFRound.objects.filter(project=project, status="succeeded").order_by("number"):
        cands = list(
            RoundCandidate.objects.filter(
                round=rnd, sampled_from=RoundCandidate.SampledFrom.POLICY_IN, shaped_reward__isnull=False
            ).select_related("prompt", "response")
        )
        scores = oracle.score([c.prompt.messages for c in cands], [c.response.text for c in cands])
        by_prompt: dict[int, list[dict]] = {}
        for c, s in zip(cands, scores, strict=True):
            by_prompt.setdefault(c.prompt_id, []).append(
                {
                    "shaped": c.shaped_reward,
                    "z": c.reward_z if c.reward_z is not None else 0.0,
                    "oracle": s,
                    "ended": c.finish_reason != "length",
                }
            )
        shaped, z = _agreement(by_prompt, "shaped"), _agreement(by_prompt, "z")
        ended = _ended_preferred(by_prompt)
        best_worst, best_of_n, groups = 0, [], []
        for p, group in by_prompt.items():
            best = max(group, key=lambda c: c["shaped"])
            worst = min(group, key=lambda c: c["shaped"])
            best_worst += best["oracle"] > worst["oracle"]
            for c in group:
                best_of_n.append(duel(best["oracle"], c["oracle"]))
                groups.append(p)
        bw = wilson_interval(best_worst, len(by_prompt))
        bon = win_rate_interval(best_of_n, groups, resamples=2000, seed=0)
        rows.append([
            f"r{rnd.number}",
            f"{len(cands)} / {len(by_prompt)}",
            f"{shaped.value:.3f} [{shaped.low:.3f}, {shaped.high:.3f}] n={shaped.n}",
            f"{z.value:.3f} [{z.low:.3f}, {z.high:.3f}]",
            f"{bw.value:.3f} [{bw.low:.3f}, {bw.high:.3f}]",
            f"{bon.value:.3f} [{bon.low:.3f}, {bon.high:.3f}]",
            f"{ended.value:.3f} [{ended.low:.3f}, {ended.high:.3f}] n={ended.n}",
        ])  # fmt: skip
        figures[rnd.number] = (shaped.value, bw.value, bon.value)
    return rows, figures


def report(project, oracle_path: str) -> str:
    rows, figures = round_rows(project, oracle_path)
    print_table(
        [
            "round",
            "candidates / prompts",
            "shaped vs oracle, pair agreement",
            "RM z vs oracle",
            "best-vs-worst by shaped: oracle agrees",
            "best-of-n by shaped, oracle win rate",
            "oracle prefers the ended one (ended vs truncated pairs)",
        ],
        rows,
    )
    return "bench loop_candidates: " + " ".join(
        f"agree_r{k}={a:.3f} best_worst_r{k}={b:.3f} best_of_n_r{k}={c:.3f}"
        for k, (a, b, c) in figures.items()
    )


def main() -> int:
    from bench.common import database_url_with_name
    from bench.loop import DB_NAME

    base_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    os.environ["DATABASE_URL"] = database_url_with_name(base_url, DB_NAME)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from annotation.models import Project
    from training.models import RewardModel

    oracle = RewardModel.objects.get(project__slug="bench-loop-oracle")
    print(report(Project.objects.get(slug="bench-loop"), oracle.artefact_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
