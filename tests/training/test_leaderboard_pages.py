"""The leaderboard selector on hand-made evaluation votes, the leaderboard page and API, the
round page's evaluation section, the plots across rounds and the evaluation forms."""

from __future__ import annotations

import itertools
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from annotation.models import Comparison, Preference, Prompt, Response
from annotation.services.comparisons import assignments_create
from training import evaluation_selectors as selectors
from training.ml.leaderboard import PairVote, bradley_terry
from training.models import Evaluation, EvaluationPair, Judge, PolicyCheckpoint, RLHFRound

from .rounds_helpers import round_project

_keys = itertools.count()


def _checkpoint(project, kind="dpo", parent=None, round=None):
    n = next(_keys)
    return PolicyCheckpoint.objects.create(
        project=project,
        kind=kind,
        parent=parent,
        round=round,
        path=f"/nowhere/{n}",
        sha256=f"{n:064x}",
        base_model="/nowhere",
    )


def _pair(evaluation, prompt, a, b, k):
    ra = Response.objects.create(
        prompt=prompt, text=f"from {a.pk}", source="policy", policy_checkpoint_id=a.pk
    )
    rb = Response.objects.create(
        prompt=prompt, text=f"from {b.pk}", source="policy", policy_checkpoint_id=b.pk
    )
    c = Comparison.objects.create(
        project=evaluation.project, prompt=prompt, response_a=ra, response_b=rb, votes_needed=5
    )
    assignments_create(comparisons=[c])
    EvaluationPair.objects.create(
        evaluation=evaluation, comparison=c, prompt=prompt, sample_index=k, checkpoint_a=a, checkpoint_b=b
    )
    return c


def _vote(comparison, rater, choice, shown_left, source="rater"):
    Preference.objects.create(
        rater=rater,
        comparison=comparison,
        choice=choice,
        strength=2 if choice in ("a", "b") else None,
        shown_left=shown_left,
        idempotency_key=f"k{next(_keys)}",
        source=source,
    )


@pytest.fixture
def board(db, make_user, settings):
    """A base, round 1's checkpoint (child of the base) and round 2's (child of round 1's),
    with evaluation pairs and hand-made votes from two people and one judge."""
    settings.GENERATION_BACKEND_URL = ""
    project = round_project(prompts=6, votes=0, held_out=3)
    base = _checkpoint(project, kind="base")
    r1 = RLHFRound.objects.create(project=project, number=1, status="succeeded", policy_in=base)
    c1 = _checkpoint(project, parent=base, round=r1)
    r2 = RLHFRound.objects.create(project=project, number=2, status="succeeded", policy_in=c1)
    c2 = _checkpoint(project, parent=c1, round=r2)
    RLHFRound.objects.filter(pk=r1.pk).update(policy_out=c1)
    RLHFRound.objects.filter(pk=r2.pk).update(policy_out=c2)
    r1.refresh_from_db()
    r2.refresh_from_db()
    judge_user = make_user(None, username=f"judge-{next(_keys)}")
    judge = Judge.objects.create(
        name=f"j{next(_keys)}", user=judge_user, kind="chat", endpoint_url="http://j.invalid/v1"
    )
    people = [make_user("rater"), make_user("rater")]
    prompts = list(Prompt.objects.filter(project=project, purpose="eval"))
    e1 = Evaluation.objects.create(
        project=project, challenger=c1, opponent=base, round=r1, status="succeeded"
    )
    e2 = Evaluation.objects.create(project=project, challenger=c2, opponent=c1, round=r2, status="succeeded")
    e1.metrics = {
        "kl": {"value": 0.5, "low": 0.4, "high": 0.6, "n": 6},
        "truncated": {"value": 0.25, "low": 0.1, "high": 0.5, "n": 6},
    }
    e1.save()
    e2.metrics = {
        "kl": {"value": 0.9, "low": 0.8, "high": 1.0, "n": 6},
        "unsafe": {"value": 0.0, "low": 0.0, "high": 0.3, "n": 6},
    }
    e2.save()
    # (evaluation, A, B, sample index, [(voter, choice, shown_left, source)])
    plan = [
        (
            e1,
            c1,
            base,
            0,
            [(people[0], "a", "a", "rater"), (people[1], "a", "b", "rater"), (judge_user, "b", "a", "judge")],
        ),
        (
            e1,
            base,
            c1,
            1,
            [
                (people[0], "b", "b", "rater"),
                (people[1], "tie", "a", "rater"),
                (judge_user, "b", "b", "judge"),
            ],
        ),
        (e1, c1, base, 2, [(people[0], "both_bad", "a", "rater"), (judge_user, "a", "b", "judge")]),
        (
            e2,
            c2,
            c1,
            0,
            [(people[0], "a", "b", "rater"), (people[1], "a", "a", "rater"), (judge_user, "a", "a", "judge")],
        ),
        (e2, c1, c2, 1, [(people[0], "a", "a", "rater"), (judge_user, "b", "b", "judge")]),
    ]
    expected = {"all": [], "human": [], str(judge.pk): []}
    for i, (ev, a, b, k, votes) in enumerate(plan):
        c = _pair(ev, prompts[i % len(prompts)], a, b, k)
        for voter, choice, shown_left, source in votes:
            _vote(c, voter, choice, shown_left, source)
            left, right = (a, b) if shown_left == "a" else (b, a)
            winner = {"a": a, "b": b}.get(choice)
            outcome = 0.5 if winner is None else float(winner == left)
            pv = PairVote(left=left.pk, right=right.pk, outcome=outcome)
            expected["all"].append(pv)
            expected["human" if source == "rater" else str(judge.pk)].append(pv)
    return {
        "project": project,
        "base": base,
        "c1": c1,
        "c2": c2,
        "r1": r1,
        "r2": r2,
        "judge": judge,
        "expected": expected,
    }


@pytest.mark.django_db
def test_the_leaderboard_selector_fits_the_hand_made_votes_with_left_sides_and_half_ties(board):
    project, base = board["project"], board["base"]
    for key, votes in board["expected"].items():
        voters = key if key in ("all", "human") else int(key)
        fit = selectors.leaderboard(project_id=project.pk, voters=voters, resamples=50, seed=3)
        truth = bradley_terry(votes, base=base.pk, resamples=50, seed=3)
        assert fit.votes == len(votes)
        assert {r.player: round(r.elo, 6) for r in fit.ratings} == {
            r.player: round(r.elo, 6) for r in truth.ratings
        }
        assert fit.position_advantage == pytest.approx(truth.position_advantage)
    table = selectors.leaderboard_table(project_id=project.pk, voters="all", resamples=50)
    assert table["votes"] == 13 and len(table["rows"]) == 3
    base_row = next(r for r in table["rows"] if r["is_base"])
    assert base_row["elo"] == pytest.approx(1000) and base_row["win_vs_base"] == pytest.approx(0.5)
    assert {r["round"] for r in table["rows"]} == {None, 1, 2}
    plot = table["plot"]
    assert len(plot["rows"]) == 3 and plot["left"] <= plot["anchor_x"] <= plot["right"]
    for r in plot["rows"]:
        assert r["x_low"] <= r["x"] <= r["x_high"]

    # Win rate of round 1's checkpoint against the base: human votes, ties half, per prompt.
    win = selectors.evaluation_win_rate(
        challenger_id=board["c1"].pk, opponent_id=base.pk, project_id=project.pk, voters="human"
    )
    assert win.n == 5 and win.value == pytest.approx((1 + 1 + 1 + 0.5 + 0.5) / 5)


@pytest.mark.django_db
def test_leaderboard_page_and_api_for_ops_and_researchers_not_raters(board, client, make_user):
    project, judge = board["project"], board["judge"]
    page_url = reverse("training:leaderboard", args=[project.pk])
    api_url = reverse("api-leaderboard", args=[project.pk])
    client.force_login(make_user("rater"))
    assert client.get(page_url).status_code == 403
    assert client.get(api_url).status_code == 403
    for role in ("ops", "researcher"):
        client.force_login(make_user(role))
        page = client.get(page_url)
        assert page.status_code == 200
        body = page.content.decode()
        assert (
            body.count('class="point"') == 3 and 'class="interval"' in body and f"Judge {judge.name}" in body
        )
        assert "round 2" in body and "[" in body
        human = client.get(page_url, {"voters": "human"})
        assert human.status_code == 200 and 'value="human" selected' in human.content.decode()
    data = client.get(api_url, {"voters": str(judge.pk)}).json()
    assert data["votes"] == len(board["expected"][str(judge.pk)]) and len(data["rows"]) == 3
    assert {k["key"] for k in data["voter_kinds"]} == {"all", "human", str(judge.pk)}
    row = data["rows"][0]
    assert {"checkpoint", "round", "elo", "elo_low", "elo_high", "win_vs_base", "votes"} <= set(row)
    bad = client.get(api_url, {"voters": "robots"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"
    assert client.get(api_url, {"voters": "999999"}).status_code == 404
    assert client.get(page_url, {"voters": "robots"}).status_code == 400


@pytest.mark.django_db
def test_round_page_shows_the_evaluation_and_the_rounds_page_plots_it(board, client, make_user):
    project, r1, r2 = board["project"], board["r1"], board["r2"]
    client.force_login(make_user("researcher"))
    assert client.get(reverse("training:round", args=[r1.pk])).status_code == 403  # rounds are ops pages
    client.force_login(make_user("ops"))
    page = client.get(reverse("training:round", args=[r1.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Evaluation of the new checkpoint" in body and "Win rate vs base" in body
    assert "n = 8" in body  # all voters, round 1's checkpoint vs its parent (the base)
    assert "0.500 [" in body  # its KL, from its evaluation's metrics
    assert 'name="against"' in body and f"Judge {board['judge'].name}" in body

    rounds = client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    assert "6 round prompts, 3 held-out evaluation prompts" in rounds
    assert 'id="plot-kl"' in rounds and "<polyline" in rounds and 'id="plot-win_vs_parent"' in rounds
    series = {s["key"]: s for s in selectors.rounds_evaluation_series(project_id=project.pk, rounds=[r1, r2])}
    assert [n for n, _ in series["kl"]["values"]] == [1, 2] and series["kl"]["points"]
    assert [n for n, _ in series["win_vs_parent"]["values"]] == [1, 2]
    assert series["truncated"]["values"] == [(1, 0.25)] and series["truncated"]["points"] == ""


@pytest.mark.django_db
def test_the_evaluate_form_queues_an_evaluation_and_ops_hold_out_prompts(board, client, make_user):
    project, r2 = board["project"], board["r2"]
    client.force_login(make_user("ops"))
    before = Evaluation.objects.count()
    done = client.post(reverse("training:round-evaluate", args=[r2.pk]), {"against": "base"})
    assert done.status_code == 302
    ev = Evaluation.objects.order_by("-pk").first()
    assert Evaluation.objects.count() == before + 1
    assert (ev.challenger_id, ev.opponent_id, ev.round_id, ev.status) == (
        board["c2"].pk,
        board["base"].pk,
        r2.pk,
        "queued",
    )
    refused = client.post(
        reverse("training:round-evaluate", args=[r2.pk]), {"against": "nobody"}, follow=True
    )
    assert "&#x27;parent&#x27; or &#x27;base&#x27;" in refused.content.decode()
    assert Evaluation.objects.count() == before + 1

    mark = client.post(reverse("training:eval-prompts-mark", args=[project.pk]), {"count": 2}, follow=True)
    assert "2 round prompt(s) are now held-out" in mark.content.decode()
    assert Prompt.objects.filter(project=project, purpose="eval").count() == 5
    client.force_login(make_user("researcher"))
    assert (
        client.post(reverse("training:eval-prompts-mark", args=[project.pk]), {"count": 1}).status_code == 403
    )


@pytest.mark.django_db
def test_prompt_imports_take_a_purpose_from_the_page_and_the_command(client, make_user, tmp_path, capsys):
    project = round_project(prompts=2, votes=0)
    client.force_login(make_user("ops"))
    url = reverse("ops-project-prompts", args=[project.pk])
    body = b'{"prompt": "Held out one?"}\n{"prompt": "Held out two?"}\n'
    page = client.post(url, {"file": SimpleUploadedFile("p.jsonl", body), "purpose": "eval"})
    assert page.status_code == 200 and "2 round prompts in the pool" in page.content.decode()
    assert "2 held-out evaluation prompts" in page.content.decode()
    path = tmp_path / "more.jsonl"
    path.write_text(json.dumps({"prompt": "Held out three?"}) + "\n")
    call_command("import_prompts", str(path), "--project", project.slug, "--purpose", "eval")
    assert "held-out evaluation prompts" in capsys.readouterr().out
    counts = dict(Prompt.objects.filter(project=project).values_list("content_hash", "purpose"))
    assert sorted(counts.values()) == ["eval", "eval", "eval", "round", "round"]
