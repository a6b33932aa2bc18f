"""Ops pages' actions and REST API for the policy gate, rollback and the paused schedule. Thin:
parse, call one service, answer. Every page and endpoint needs `annotation.operate`.

Pages: "Check gate now" on a round, "Make current" (with a reason) per checkpoint and "Resume
schedule" on the rounds page. API: POST /api/training/projects/<id>/rollback/ {"checkpoint",
"reason"}, POST /api/training/rounds/<id>/gate/.
"""

from __future__ import annotations

from functools import partial

from django.urls import reverse
from rest_framework import serializers

from annotation.models import Project
from core.errors import ErrorCode
from training.models import PolicyEvent, RLHFRound
from training.services.gates import round_gate_check
from training.services.policies import policy_rollback
from training.services.schedules import schedule_resume
from training.views import (
    ObjectActionView,
    ProjectCreateView,
    action_schema,
    page_action,
    project_page,
    project_schema,
    row_action,
)


def _rounds_url(project_id: int) -> str:
    return reverse("training:rounds", args=[project_id])


@row_action(RLHFRound, "round_id")
def round_gate_check_view(request, r: RLHFRound):
    def done(checked: RLHFRound) -> str:
        return f"Gate of round {checked.number}: {(checked.gate or {}).get('reason') or 'no gate yet'}"

    return page_action(
        request, partial(round_gate_check, round_id=r.pk), done, to=reverse("training:round", args=[r.pk])
    )


@project_page("POST")
def policy_rollback_view(request, project: Project):
    try:
        checkpoint = int(request.POST.get("checkpoint", ""))
    except ValueError:
        checkpoint = 0
    action = partial(
        policy_rollback,
        project=project,
        checkpoint=checkpoint,
        by=request.user,
        reason=request.POST.get("reason", ""),
    )
    done = "{0.checkpoint.label} is now the current policy.".format
    return page_action(request, action, done, to=_rounds_url(project.pk))


@project_page("POST")
def schedule_resume_view(request, project: Project):
    action = partial(schedule_resume, project=project, by=request.user)
    return page_action(request, action, "Schedule resumed.", to=_rounds_url(project.pk))


# --- REST API ---------------------------------------------------------------------------------


class PolicyEventSerializer(serializers.ModelSerializer):
    by = serializers.CharField(source="by.username", default=None, read_only=True)

    class Meta:
        model = PolicyEvent
        fields = [
            "id",
            "project",
            "kind",
            "checkpoint",
            "previous",
            "round",
            "by",
            "reason",
            "numbers",
            "created_at",
        ]
        read_only_fields = fields


class RollbackSerializer(serializers.Serializer):
    checkpoint = serializers.IntegerField()
    reason = serializers.CharField(allow_blank=True, trim_whitespace=True)


@project_schema(ErrorCode.STATE)
class PolicyRollbackView(ProjectCreateView):
    """POST {"checkpoint": id, "reason": "..."}: make that checkpoint of the project current;
    201 with the policy event."""

    serializer_class, input_class = PolicyEventSerializer, RollbackSerializer

    def create(self, request, project, data):
        return policy_rollback(
            project=project, checkpoint=data["checkpoint"], by=request.user, reason=data["reason"]
        )


class RoundGateSerializer(serializers.ModelSerializer):
    class Meta:
        model = RLHFRound
        fields = ["id", "project", "number", "policy_in", "policy_out", "evaluation_state", "gate"]
        read_only_fields = fields


@action_schema(RoundGateSerializer)
class RoundGateCheckView(ObjectActionView):
    """POST: check the round's policy gate now; the round's gate state and numbers back."""

    model, serializer_class, lookup = RLHFRound, RoundGateSerializer, "round_id"

    def act(self, request, pk: int) -> RLHFRound:
        return round_gate_check(round_id=pk)
