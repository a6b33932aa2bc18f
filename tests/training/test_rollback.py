"""Rollback: ops make an earlier checkpoint current from the rounds page, the API or the command
line; it is recorded as a policy event with who and why, and the next round samples from it.
Raters and researchers cannot."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from core.errors import ErrorCode, ServiceError
from training.models import PolicyCheckpoint, PolicyEvent, RewardModel, RLHFRound
from training.services.gates import round_gate_open
from training.services.policies import policy_rollback
from training.services.rounds import round_advance, round_start

from .gates_helpers import ended_round, gate_project


def two_rounds():
    """A project whose lineage is base → round 1 → round 2, round 2's checkpoint current."""
    project, base = gate_project(policy_gate="always")
    one = ended_round(project, base, number=1)
    round_gate_open(one)
    two = ended_round(project, one.policy_out, number=2)
    round_gate_open(two)
    assert PolicyCheckpoint.objects.get(project=project, is_current=True) == two.policy_out
    return project, base, one, two


def current(project) -> PolicyCheckpoint:
    return PolicyCheckpoint.objects.get(project=project, is_current=True)


@pytest.mark.django_db
def test_the_service_records_who_why_from_and_to_and_refuses_what_it_should(make_user):
    project, base, one, two = two_rounds()
    other, other_base = gate_project()
    ops = make_user("ops")
    for bad, code in (("", ErrorCode.REASON), ("   ", ErrorCode.REASON)):
        with pytest.raises(ServiceError) as refused:
            policy_rollback(project=project, checkpoint=one.policy_out, by=ops, reason=bad)
        assert refused.value.code == code
    with pytest.raises(ServiceError) as refused:
        policy_rollback(project=project, checkpoint=other_base, by=ops, reason="wrong project")
    assert refused.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(ServiceError) as refused:
        policy_rollback(project=project, checkpoint=two.policy_out, by=ops, reason="already")
    assert refused.value.code == ErrorCode.STATE
    assert current(project) == two.policy_out and current(other) == other_base

    event = policy_rollback(
        project=project, checkpoint=one.policy_out.pk, by=ops, reason=" Round 2 rambles. "
    )
    assert current(project) == one.policy_out
    assert (event.kind, event.checkpoint, event.previous, event.by, event.reason) == (
        "rollback", one.policy_out, two.policy_out, ops, "Round 2 rambles.",
    )  # fmt: skip


@pytest.mark.django_db
def test_the_next_round_samples_from_the_rolled_back_checkpoint(make_user):
    project, base, one, two = two_rounds()
    RewardModel.objects.create(
        project=project, version=1, backbone="x", status="succeeded", artefact_path="/x",
        artefact_sha256="a" * 64, is_active=True,
    )  # fmt: skip
    policy_rollback(project=project, checkpoint=base, by=make_user("ops"), reason="start over")
    r, created = round_start(project=project, enqueue=False)
    assert created
    r = round_advance(round_id=r.pk)  # the reward step picks the policy to sample
    assert r.state == "generating", r.error
    assert r.policy_in == base and r.reference == base


@pytest.mark.django_db
def test_rollback_from_the_rounds_page_lists_the_event_and_needs_ops(client, make_user):
    project, base, one, two = two_rounds()
    url = reverse("training:policy-rollback", args=[project.pk])
    for role in ("rater", "researcher"):
        client.force_login(make_user(role))
        assert client.post(url, {"checkpoint": base.pk, "reason": "x"}).status_code == 403
        assert client.get(reverse("training:rounds", args=[project.pk])).status_code == 403
    assert current(project) == two.policy_out

    ops = make_user("ops")
    client.force_login(ops)
    page = client.get(reverse("training:rounds", args=[project.pk])).content.decode()
    assert page.count("Make current") == 2  # every checkpoint but the current one
    refused = client.post(url, {"checkpoint": base.pk, "reason": ""}, follow=True)
    assert b"a reason is required" in refused.content and current(project) == two.policy_out
    done = client.post(url, {"checkpoint": one.policy_out.pk, "reason": "<b>too long</b>"}, follow=True)
    assert done.status_code == 200 and current(project) == one.policy_out
    body = done.content.decode()
    assert "is now the current policy" in body and "Rolled back by ops" in body and ops.username in body
    assert "&lt;b&gt;too long&lt;/b&gt;" in body and "<b>too long</b>" not in body
    assert f"#{two.policy_out.pk} → #{one.policy_out.pk}" in body


@pytest.mark.django_db
def test_rollback_through_the_api_for_ops_only(make_user):
    project, base, one, two = two_rounds()
    other, other_base = gate_project()
    url = f"/api/training/projects/{project.pk}/rollback/"
    for role in ("rater", "researcher"):
        client = APIClient()
        client.force_authenticate(make_user(role))
        assert client.post(url, {"checkpoint": base.pk, "reason": "x"}, format="json").status_code == 403
    ops = APIClient()
    user = make_user("ops")
    ops.force_authenticate(user)
    empty = ops.post(url, {"checkpoint": base.pk, "reason": ""}, format="json")
    assert empty.status_code == 400 and empty.json()["code"] == "reason"
    foreign = ops.post(url, {"checkpoint": other_base.pk, "reason": "x"}, format="json")
    assert foreign.status_code == 404
    assert ops.post(url, {"reason": "x"}, format="json").status_code == 400
    done = ops.post(url, {"checkpoint": base.pk, "reason": "all rounds were worse"}, format="json")
    assert done.status_code == 201, done.content
    body = done.json()
    assert (
        body["kind"] == "rollback" and body["checkpoint"] == base.pk and body["previous"] == two.policy_out.pk
    )
    assert body["by"] == user.username and body["reason"] == "all rounds were worse"
    assert current(project) == base
    again = ops.post(url, {"checkpoint": base.pk, "reason": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "state"


@pytest.mark.django_db
def test_rollback_from_the_command_line(make_user, capsys):
    project, base, one, two = two_rounds()
    ops = make_user("ops")
    call_command(
        "policy_rollback",
        project=project.slug,
        checkpoint=one.policy_out.pk,
        reason="a bad round",
        user=ops.username,
    )
    assert current(project) == one.policy_out
    assert "is now current" in capsys.readouterr().out
    event = PolicyEvent.objects.get(project=project, kind="rollback")
    assert event.by == ops and event.reason == "a bad round" and event.previous == two.policy_out
    with pytest.raises(CommandError, match="reason"):
        call_command("policy_rollback", project=project.slug, checkpoint=base.pk, reason=" ")
    with pytest.raises(CommandError, match="no policy checkpoint"):
        call_command("policy_rollback", project=project.slug, checkpoint=999_999, reason="x")
    call_command("policy_rollback", project=str(project.pk), checkpoint=base.pk, reason="by nobody")
    assert (
        current(project) == base
        and PolicyEvent.objects.filter(project=project, kind="rollback", by=None).count() == 1
    )
    assert RLHFRound.objects.filter(project=project).count() == 2  # rounds are left as they were
