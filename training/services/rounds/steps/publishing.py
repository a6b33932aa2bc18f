"""Step "publishing": the updated policy's candidates (sampled_from "policy_out"; generated,
filtered and scored like the round's own), then one comparison per prompt, up to the round's
`pairs_to_publish`, written together with
its unique (round, prompt) `RoundPair` row: a rerun publishes only prompts that have none.
Which two candidates make the pair is `training.ml.pair_selection.choose_pair`."""

from __future__ import annotations

import dataclasses
import random

from django.db import transaction

from annotation.models import Comparison
from annotation.services.comparisons import assignments_create
from core.events import Audience, event_send_on_commit, project_group
from training.ml.pair_selection import Candidate, PairChoice, choose_pair
from training.ml.round_metrics import new_policy_metrics
from training.models import RLHFRound, RoundCandidate, RoundPair, RoundSettings
from training.services.rounds.backends import http_backend_configured
from training.services.rounds.progress import RoundReporter, RoundStepError
from training.services.rounds.steps.batches import candidate_record
from training.services.rounds.steps.filtering import candidates_filter
from training.services.rounds.steps.generating import candidates_generate
from training.services.rounds.steps.scoring import candidate_stats, candidates_score

POLICY_IN, POLICY_OUT = RoundCandidate.SampledFrom.POLICY_IN, RoundCandidate.SampledFrom.POLICY_OUT


def _new_policy_candidates(r: RLHFRound, rep: RoundReporter, todo: list[int]) -> None:
    """The new policy's own candidates. An HTTP server serves whatever it was started with, so
    with that backend pairs come from this round's candidates."""
    if todo and not http_backend_configured() and r.policy_out_id:
        candidates_generate(
            r, rep, step="publishing", sampled_from=POLICY_OUT, policy=r.policy_out, prompt_ids=todo
        )
        candidates_filter(r, rep, step="publishing", sampled_from=POLICY_OUT)
        candidates_score(r, rep, step="publishing", sampled_from=POLICY_OUT)


def _pair_publish(r: RLHFRound, pid: int, choice: PairChoice, rows: dict[int, RoundCandidate]) -> None:
    a, b = rows[choice.a.id], rows[choice.b.id]
    if a.blocked or b.blocked:  # never: choose_pair drops them; a blocked text never reaches a rater
        raise RoundStepError("internal error: a blocked candidate was selected for publishing")
    gap = choice.gap
    project = r.project
    with transaction.atomic():
        comparison = Comparison.objects.create(
            project=project,
            prompt_id=pid,
            response_a=a.response,
            response_b=b.response,
            votes_needed=project.overlap,
            # The configured priority, not + the round number: within a priority the queue
            # serves the oldest comparison first, so a new round never buries the unrated
            # pairs of the rounds before it.
            priority=int(r.config.get("priority", 100)),
            round_id=r.pk,
            metadata={"round": r.number, "strategy": choice.strategy, "reward_gap": round(gap, 6)},
        )
        assignments_create(comparisons=[comparison])
        RoundPair.objects.create(
            round=r,
            prompt_id=pid,
            comparison=comparison,
            strategy=choice.strategy,
            candidate_a=a,
            candidate_b=b,
            reward_gap=gap,
            reason=choice.reason[:500],
        )


def _head_scores(r: RLHFRound, rows: dict[int, RoundCandidate]) -> dict[int, tuple[float, ...]]:
    """{candidate id: each ensemble head's score} for the scored, unblocked candidates, from
    the active reward model's heads; empty when it has none (selection then falls back)."""
    from training.services.scoring import reward_head_scores

    todo = [c for c in rows.values() if c.reward is not None and not c.blocked]
    if not todo:
        return {}
    scores = reward_head_scores(
        project=r.project_id,
        prompts=[c.prompt.messages for c in todo],
        responses=[c.response.text for c in todo],
    )
    if scores is None:
        return {}
    return {c.pk: tuple(s) for c, s in zip(todo, scores, strict=True)}


def step_publishing(r: RLHFRound, rep: RoundReporter) -> None:
    limit = int(r.config.get("pairs_to_publish", 16))
    unblocked = set(
        RoundCandidate.objects.filter(round=r, sampled_from=POLICY_IN, blocked=False).values_list(
            "prompt_id", flat=True
        )
    )
    targets = [pid for pid in r.prompt_ids if pid in unblocked][:limit]
    published = set(RoundPair.objects.filter(round=r).values_list("prompt_id", flat=True))
    todo = [pid for pid in targets if pid not in published]
    _new_policy_candidates(r, rep, todo)

    strategy = r.config.get("strategy", RoundSettings.Strategy.NEW_VS_OLD)
    rows = {
        c.pk: c
        for c in RoundCandidate.objects.filter(round=r, prompt_id__in=todo).select_related(
            "response", "prompt"
        )
    }
    heads = _head_scores(r, rows) if strategy == RoundSettings.Strategy.ENSEMBLE else {}
    cands: dict[tuple[int, str], list[Candidate]] = {}
    for c in rows.values():
        record = dataclasses.replace(candidate_record(c), head_scores=heads.get(c.pk))
        cands.setdefault((c.prompt_id, c.sampled_from), []).append(record)
    explore = float(r.config.get("explore_rate", 0.1))
    done = len(targets) - len(todo)
    rep.progress("publishing", done, len(targets), phase="pairs", force=True)
    created = 0
    for pid in todo:
        rep.check()
        choice = choose_pair(
            strategy,
            cands.get((pid, POLICY_IN), []),
            cands.get((pid, POLICY_OUT), []),
            explore=explore,
            rng=random.Random(f"{r.seed}:{pid}"),
        )
        done += 1
        if choice is None:
            continue
        _pair_publish(r, pid, choice, rows)
        created += 1
        rep.progress("publishing", done, len(targets), phase="pairs")
    r.metrics["published_pairs"] = RoundPair.objects.filter(round=r).count()
    r.metrics.update(new_policy_metrics(candidate_stats(r, POLICY_OUT)))
    if created:
        event_send_on_commit(
            group=project_group(r.project_id, Audience.COUNTERS),
            payload={"kind": "comparisons_added", "count": created},
        )
