"""Rows for gate and rollback tests without generation: a project with a base checkpoint, rounds
that ended with a new checkpoint, and evaluation votes cast through the rating queue."""

from __future__ import annotations

import itertools
import uuid

from django.contrib.auth import get_user_model

from annotation.models import Project, Prompt, Response
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.members import project_members_add_all
from annotation.services.queue import assignment_next, preference_submit
from training.models import Evaluation, EvaluationPair, PolicyCheckpoint, RLHFRound, RoundCandidate
from training.services.schedules import round_settings_update

_names = itertools.count()


def gate_project(**round_settings) -> tuple[Project, PolicyCheckpoint]:
    """A project with one prompt in its pool, its base checkpoint current, and round settings."""
    n = f"{uuid.uuid4().hex[:6]}-{next(_names)}"
    project = Project.objects.create(name=f"Gates {n}", slug=f"gates-{n}", overlap=1)
    Prompt.objects.create(
        project=project,
        messages=[{"role": "user", "content": "Pool?"}],
        content_hash=n,
        purpose=Prompt.Purpose.ROUND,
    )
    base = PolicyCheckpoint.objects.create(
        project=project, kind="base", path="/models/base", base_model="/models/base", sha256="b" * 64,
        is_current=True,
    )  # fmt: skip
    round_settings_update(project=project, **round_settings)
    return project, base


def ended_round(
    project: Project,
    parent: PolicyCheckpoint,
    *,
    number: int,
    proxy: float | None = None,
    kl: float | None = None,
) -> RLHFRound:
    """A round whose job ended with a new checkpoint (child of `parent`), as the runner leaves
    it before the gate: status succeeded, nothing current changed. `proxy`: the reward of one
    candidate of the new policy; `kl`: the round's KL metric."""
    r = RLHFRound.objects.create(
        project=project,
        number=number,
        status="succeeded",
        step="publishing",
        policy_in=parent,
        reference=parent,
        metrics={"kl_to_reference": kl} if kl is not None else {},
    )
    out = PolicyCheckpoint.objects.create(
        project=project, kind="dpo", parent=parent, round=r, path=f"/models/round-{r.pk}",
        base_model="/models/base", sha256=uuid.uuid4().hex * 2,
    )  # fmt: skip
    r.policy_out = out
    r.save(update_fields=["policy_out"])
    if proxy is not None:
        prompt = Prompt.objects.filter(project=project).first()
        response = Response.objects.create(prompt=prompt, text=f"new {r.pk}", source="policy")
        RoundCandidate.objects.create(
            round=r, prompt=prompt, sampled_from="policy_out", candidate_index=0, response=response, policy=out,
            reward=proxy,
        )  # fmt: skip
    return r


def voter(username: str | None = None, *, project: Project | None = None):
    """A voting account for the queue service (which checks no role), a member of `project`."""
    user = get_user_model().objects.create_user(username=username or f"voter-{uuid.uuid4().hex[:8]}")
    if project is not None:
        project_members_add_all(project=project, users=[user])
    return user


def evaluation_votes(
    project: Project,
    challenger: PolicyCheckpoint,
    opponent: PolicyCheckpoint,
    *,
    wins: int,
    losses: int,
    rater=None,
    round: RLHFRound | None = None,
) -> Evaluation:
    """Evaluation pairs of `challenger` (response A) against `opponent` (response B), one per
    prompt, each voted on through the queue by `rater`: `wins` for the challenger, then `losses`."""
    evaluation = Evaluation.objects.create(
        project=project, challenger=challenger, opponent=opponent, round=round, status="succeeded"
    )
    tag = uuid.uuid4().hex[:8]
    specs = [
        ComparisonSpec(
            messages=[{"role": "user", "content": f"Eval {tag} {i}?"}],
            response_a=f"challenger {i}",
            response_b=f"opponent {i}",
            priority=10_000,
        )
        for i in range(wins + losses)
    ]
    for c in comparisons_create(project=project, specs=specs):
        EvaluationPair.objects.create(
            evaluation=evaluation, comparison=c, prompt_id=c.prompt_id, checkpoint_a=challenger,
            checkpoint_b=opponent,
        )  # fmt: skip
    rater = rater or voter()
    project_members_add_all(project=project, users=[rater])
    for i in range(wins + losses):
        lease = assignment_next(rater=rater, project=project)
        preference_submit(
            rater=rater,
            comparison_id=lease.comparison.pk,
            choice="a" if i < wins else "b",
            strength=1,
            idempotency_key=uuid.uuid4().hex,
        )
    return evaluation
