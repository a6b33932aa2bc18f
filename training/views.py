"""Ops pages and REST API for reward-model runs. Thin: parse, call one service, render.

Pages (server-rendered, htmx partial for the runs table) and the API share one permission:
`annotation.operate`.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Project
from core.api import error_response
from core.errors import ServiceError
from core.roles import OPERATE
from training import selectors
from training.models import RewardModel
from training.services.reward_models import (
    CONFIG_OVERRIDES,
    reward_model_cancel,
    reward_model_promote,
    reward_model_run_create,
)

operate_required = permission_required(OPERATE, raise_exception=True)


class RunStartForm(forms.Form):
    """The few settings ops change from the page; empty fields keep the defaults."""

    epochs = forms.IntegerField(required=False, min_value=1, max_value=100)
    batch_size = forms.IntegerField(required=False, min_value=1, max_value=1024)
    learning_rate = forms.FloatField(required=False, min_value=1e-8, max_value=1.0)
    max_length = forms.IntegerField(required=False, min_value=16, max_value=8192)
    heldout_fraction = forms.FloatField(required=False, min_value=0.0, max_value=0.9)
    max_steps = forms.IntegerField(required=False, min_value=1)
    time_limit_s = forms.FloatField(required=False, min_value=1.0, label="Time limit (s)")
    tie_mode = forms.ChoiceField(
        required=False, choices=[("", "default (drop)"), ("drop", "drop"), ("equal", "equal")]
    )
    both_bad_mode = forms.ChoiceField(
        required=False, choices=[("", "default (drop)"), ("drop", "drop"), ("equal", "equal")]
    )
    pooling = forms.ChoiceField(
        required=False,
        choices=[("", "default"), ("auto", "auto"), ("head", "model's head"), ("mean", "mean of tokens")],
    )

    def overrides(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}


def _runs_context(project: Project) -> dict:
    runs = list(selectors.reward_models_for(project=project))
    for run in runs:
        run.curve_points = selectors.loss_curve_points(run.loss_curve)
    return {"project": project, "runs": runs}


@require_GET
@login_required
@operate_required
def index(request):
    return render(request, "training/index.html", {"rows": selectors.projects_with_reward_summary()})


@require_GET
@login_required
@operate_required
def reward_models(request, project_id: int):
    project = get_object_or_404(Project, pk=project_id)
    context = _runs_context(project)
    if request.htmx:
        return render(request, "training/_runs.html", context)
    context["form"] = RunStartForm()
    context["config_fields"] = sorted(CONFIG_OVERRIDES)
    return render(request, "training/reward_models.html", context)


@require_POST
@login_required
@operate_required
def reward_model_start(request, project_id: int):
    project = get_object_or_404(Project, pk=project_id)
    form = RunStartForm(request.POST)
    if not form.is_valid():
        context = _runs_context(project)
        context["form"] = form
        return render(request, "training/reward_models.html", context, status=400)
    try:
        run = reward_model_run_create(
            project=project, config_overrides=form.overrides(), requested_by=request.user
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Queued reward model v{run.version}.")
    return redirect("training:reward-models", project_id=project.pk)


def _run_action(request, run_id: int, action, done: str):
    run = get_object_or_404(RewardModel, pk=run_id)
    try:
        action(run)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done.format(version=run.version))
    return redirect("training:reward-models", project_id=run.project_id)


@require_POST
@login_required
@operate_required
def reward_model_cancel_view(request, run_id: int):
    return _run_action(
        request, run_id, lambda run: reward_model_cancel(run_id=run.pk), "Cancelling v{version}."
    )


@require_POST
@login_required
@operate_required
def reward_model_promote_view(request, run_id: int):
    return _run_action(
        request,
        run_id,
        lambda run: reward_model_promote(run_id=run.pk, promoted_by=request.user),
        "v{version} is now the active reward model.",
    )


# --- REST API ---------------------------------------------------------------------------------


class CanOperate(BasePermission):
    message = "You need the ops role (annotation.operate)."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(OPERATE))


class RewardModelSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", default=None, read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)
    progress_step = serializers.IntegerField(source="progress_done", read_only=True)

    class Meta:
        model = RewardModel
        fields = [
            "id", "project", "version", "status", "is_active", "backbone", "config", "requested_by",
            "snapshot_cutoff_id", "snapshot_counts", "snapshot_sha256",
            "progress_step", "progress_total", "progress_loss", "progress_epoch", "progress_percent",
            "cancel_requested", "attempts", "error",
            "metrics", "heldout_accuracy", "heldout_loss", "ece", "loss_curve",
            "artefact_path", "artefact_sha256", "safety_source", "safety_path", "safety_sha256",
            "promotion_note", "promoted_at", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    config = serializers.DictField(required=False, default=dict)


_ERROR = inline_serializer(
    "TrainingError", fields={"detail": serializers.CharField(), "code": serializers.CharField()}
)


class RewardModelListView(APIView):
    """GET: the project's runs, newest first. POST {"config": {...}}: queue a run."""

    permission_classes = [IsAuthenticated, CanOperate]

    @extend_schema(responses=RewardModelSerializer(many=True))
    def get(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        runs = selectors.reward_models_for(project=project)
        return Response(RewardModelSerializer(runs, many=True).data)

    @extend_schema(request=RunStartSerializer, responses={201: RewardModelSerializer, 400: _ERROR})
    def post(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        data = RunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = reward_model_run_create(
                project=project, config_overrides=data.validated_data["config"], requested_by=request.user
            )
        except ServiceError as exc:
            return error_response(exc)
        return Response(RewardModelSerializer(run).data, status=status.HTTP_201_CREATED)


class RewardModelDetailView(APIView):
    permission_classes = [IsAuthenticated, CanOperate]

    @extend_schema(responses=RewardModelSerializer)
    def get(self, request, run_id: int):
        return Response(RewardModelSerializer(get_object_or_404(RewardModel, pk=run_id)).data)


class RewardModelCancelView(APIView):
    permission_classes = [IsAuthenticated, CanOperate]

    @extend_schema(request=None, responses={200: RewardModelSerializer, 400: _ERROR})
    def post(self, request, run_id: int):
        get_object_or_404(RewardModel, pk=run_id)
        try:
            run = reward_model_cancel(run_id=run_id)
        except ServiceError as exc:
            return error_response(exc)
        return Response(RewardModelSerializer(run).data)


class RewardModelPromoteView(APIView):
    permission_classes = [IsAuthenticated, CanOperate]

    @extend_schema(request=None, responses={200: RewardModelSerializer, 400: _ERROR})
    def post(self, request, run_id: int):
        get_object_or_404(RewardModel, pk=run_id)
        try:
            run = reward_model_promote(run_id=run_id, promoted_by=request.user)
        except ServiceError as exc:
            return error_response(exc)
        return Response(RewardModelSerializer(run).data)
