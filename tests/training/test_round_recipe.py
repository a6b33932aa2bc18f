"""The policy update's data recipe (training.services.rounds.steps.updating._policy_pairs):
human votes on earlier rounds' pairs, newest first, at most `human_pairs_ratio` per fresh
pair, each in at most `vote_max_uses` updates; a response a rater flagged unsafe is never
DPO's chosen. No model is loaded: the round has no candidates, only votes."""

from __future__ import annotations

import uuid

import pytest

from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.queue import assignment_next, preference_submit
from training.models import RLHFRound
from training.services.rounds.steps.updating import _policy_pairs

from .rounds_helpers import round_project


def voted_round(project, rater, texts: list[tuple[str, str]], *, flag_a: set[int] = frozenset()):
    """A finished round whose published pairs (A, B) got one vote each for A, in order; the A
    side of the pairs whose index is in `flag_a` flagged unsafe by the rater."""
    number = RLHFRound.objects.filter(project=project).count() + 1
    r = RLHFRound.objects.create(project=project, number=number, status="succeeded")
    specs = [
        ComparisonSpec(messages=[{"role": "user", "content": f"Q{number}-{i}?"}], response_a=a, response_b=b)
        for i, (a, b) in enumerate(texts)
    ]
    comparisons = comparisons_create(project=project, specs=specs, round_id=r.pk)
    index = {c.pk: i for i, c in enumerate(comparisons)}
    votes = {}
    for _ in comparisons:
        lease = assignment_next(rater=rater, project=project)
        i = index[lease.comparison.pk]
        result = preference_submit(
            rater=rater,
            comparison_id=lease.comparison.pk,
            choice="a",
            strength=2,
            unsafe_a=i in flag_a,
            unsafe_a_category="violence" if i in flag_a else "",
            idempotency_key=uuid.uuid4().hex,
        )
        votes[i] = result.preference.pk
    return r, [votes[i] for i in range(len(comparisons))]


def new_round(project, **config):
    number = RLHFRound.objects.filter(project=project).count() + 1
    return RLHFRound.objects.create(
        project=project, number=number, config={"vote_max_uses": 2, "human_pairs_ratio": 100, **config}
    )


@pytest.mark.django_db
def test_a_response_a_rater_flagged_unsafe_is_never_chosen(make_user):
    project = round_project(votes=0)
    rater = make_user("rater")
    _, votes = voted_round(
        project, rater, [("fine 0", "worse 0"), ("HARMFUL 1", "worse 1"), ("fine 2", "worse 2")], flag_a={1}
    )
    pairs, used, counts = _policy_pairs(new_round(project))
    assert "HARMFUL 1" not in {p.chosen for p in pairs}
    assert {p.chosen for p in pairs} == {"fine 0", "fine 2"} and counts["votes_unsafe_chosen"] == 1
    assert sorted(used) == sorted([votes[0], votes[2]])


@pytest.mark.django_db
def test_each_vote_is_trained_on_a_bounded_number_of_times_newest_first(make_user):
    project = round_project(votes=0)
    rater = make_user("rater")
    _, votes = voted_round(project, rater, [(f"good {i}", f"bad {i}") for i in range(3)])
    # The two earlier updates trained on vote 0 twice and on vote 1 once.
    RLHFRound.objects.filter(pk=new_round(project).pk).update(
        status="succeeded", trained_vote_ids=[votes[0], votes[1]]
    )
    RLHFRound.objects.filter(pk=new_round(project).pk).update(status="succeeded", trained_vote_ids=[votes[0]])
    r = new_round(project)
    pairs, used, counts = _policy_pairs(r)
    assert votes[0] not in used and counts["votes_used_up"] == 1
    assert used == [votes[2], votes[1]]  # newest first
    # Fresh pairs outweigh old votes: at most human_pairs_ratio per fresh pair (at least one slot).
    r.config["human_pairs_ratio"] = 0.5
    pairs, used, counts = _policy_pairs(r)
    assert used == [votes[2]] and counts["human_pairs"] == 1 and counts["reward_pairs"] == 0
    # A round's own record never counts against it (a rerun after a crash picks the same votes).
    RLHFRound.objects.filter(pk=r.pk).update(trained_vote_ids=[votes[2]])
    assert _policy_pairs(r)[1] == [votes[2]]
