"""A round on a small project still finds a preference pair, or says why not (issue 11: with the
real defaults on a one-prompt pool every candidate ran past the token limit or was blocked, and
the round failed with "no preference pair"). Tiny models: the conftest's tiny policy never
samples its end of turn, so every candidate is truncated."""

from __future__ import annotations

import pytest

from training.models import RoundCandidate
from training.services.rounds import round_run, round_start

from .rounds_helpers import round_project


@pytest.mark.django_db
def test_a_round_whose_policy_never_ends_in_time_trains_on_its_best_prefix(tiny):
    project = round_project(
        prompts=1,
        prompts_per_round=1,
        pairs_to_publish=1,
        blocklist="",
        toxicity_threshold=1.0,  # nothing blocked: truncation alone is what this test is about
        policy_gate="always",
    )
    r, _ = round_start(project=project, enqueue=False, seed=7)
    done = round_run(round_id=r.pk)

    assert done.state == "done", done.error
    cands = RoundCandidate.objects.filter(round=done, sampled_from="policy_in")
    assert {c.finish_reason for c in cands} == {"length"} and not cands.filter(blocked=True).exists()
    dpo = done.metrics["dpo"]
    # One prompt, every candidate truncated: its best (penalised, trained without an end of
    # turn) is chosen over its worst, rather than no pair at all.
    assert (
        dpo["reward_pairs"] == 1 and dpo["pairs_truncated_chosen"] == 1 and dpo["prompts_all_truncated"] == 1
    )
    assert done.policy_out is not None and dpo["steps"] >= 1


@pytest.mark.django_db
def test_a_round_with_every_candidate_blocked_says_why_and_what_to_change(tiny):
    project = round_project(
        prompts=2, prompts_per_round=2, pairs_to_publish=2, blocklist="/./", policy_gate="always"
    )
    r, _ = round_start(project=project, enqueue=False, seed=7)
    failed = round_run(round_id=r.pk)

    assert failed.state == "failed" and failed.failed_step == "updating"
    assert "No preference pair" in failed.error
    assert "2 prompt(s), 2 had every candidate blocked" in failed.error
    assert "blocklist 6" in failed.error and "review the blocklist" in failed.error
    assert failed.metrics["dpo"]["prompts_all_blocked"] == 2 and failed.policy_out is None
