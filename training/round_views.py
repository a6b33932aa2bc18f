"""Ops pages and REST API for RLHF rounds. Thin: parse, call one service or selector, render.

Pages: the project's rounds (settings + schedule form, start now, the list as an htmx partial)
and one round (per-step progress bars updated live over the project's websocket, metrics,
lineage, published pairs, candidates). Every page and endpoint needs `annotation.operate`.
Model output is shown only through Django's auto-escaping.
"""

from __future__ import annotations

import json
from functools import partial

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.models import Project
from annotation.selectors import projects_for, prompt_pool_counts
from core import safejson
from core.api import ERRORS, errors_with
from core.errors import ErrorCode, ServiceError
from core.jobs import job_is_held
from core.permissions import role_required
from core.roles import OPERATE
from training import evaluation_selectors
from training import round_selectors as selectors
from training.gate_selectors import policy_events_for
from training.models import RLHFRound, RoundSettings
from training.services.evaluations import prompts_mark_eval, round_evaluation_create
from training.services.policies import checkpoints_disk_used
from training.services.reward_models.config import overrides_clean
from training.services.rounds import round_cancel, round_retry, round_settings_get, round_start
from training.services.schedules import EDITABLE_FIELDS, SETTING_ALIASES, round_settings_update
from training.views import (
    ObjectActionView,
    OpsApiView,
    ProjectRowsView,
    action_schema,
    page_action,
    project_page,
    project_schema,
    row_action,
)

STEP_LABELS = {
    "reward": "Reward model",
    "generating": "Generate",
    "filtering": "Safety filter",
    "scoring": "Score",
    "updating": "Policy update (DPO)",
    "publishing": "Publish pairs",
}


class RoundSettingsForm(forms.ModelForm):
    reward_config = forms.CharField(
        required=False,
        label="Reward-model run overrides (JSON)",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=(
            'A JSON object of the settings the round\'s reward-model run changes, e.g. {"epochs": 2, '
            '"learning_rate": 0.0001, "tie_mode": "equal"}; the same names and ranges as the reward-'
            "model start form. Empty: the defaults."
        ),
    )

    class Meta:
        model = RoundSettings
        fields = list(EDITABLE_FIELDS)
        widgets = {"blocklist": forms.Textarea(attrs={"rows": 4})}
        labels = {
            "candidates_per_prompt": "Candidates per prompt",
            "pairs_to_publish": "Pairs to publish per round",
            "every_hours": "Every N hours",
            "cron": "Cron (minute hour day month weekday)",
            "min_new_preferences": "Start when at least M new preferences arrived",
            "enabled": "Schedule enabled",
            "policy_gate": "Policy gate (when a round's checkpoint becomes current)",
            "gate_threshold": "Gate: win rate against the parent",
            "gate_min_votes": "Gate: evaluation votes needed",
            "eval_judge": "Evaluation judge (judge gate)",
            "eval_prompts": "Evaluation prompts",
            "eval_samples": "Evaluation samples per prompt",
            "eval_max_new_tokens": "Evaluation max new tokens",
            "eval_priority": "Evaluation queue priority",
            "kl_budget": "KL budget (pause the schedule above it)",
            "update_method": "Policy update method",
        }
        help_texts = {
            "priority": (
                "Queue priority of published pairs (higher serves first). Every round publishes at "
                "this priority; within it the oldest pairs serve first, so earlier rounds' unrated "
                "pairs are not buried by newer ones."
            ),
            "blocklist": (
                "One entry per line, case-insensitive. A word or phrase matches as a stem: at the "
                'start of a word, and the words that start with it ("kill" blocks "killing", '
                'not "skill"). /regex/ for a regex, e.g. /\\bkill\\b/ for the whole word only.'
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            config = self.instance.reward_config or {}
            self.initial["reward_config"] = json.dumps(config, indent=1) if config else ""
        # Added after the form's other fields: a post without it keeps the current method.
        self.fields["update_method"].required = False

    def clean_update_method(self) -> str:
        return self.cleaned_data.get("update_method") or self.instance.update_method

    def clean_reward_config(self) -> dict:
        """JSON object → the reward-model run's overrides, checked with its rules (field errors)."""
        text = (self.cleaned_data.get("reward_config") or "").strip()
        if not text:
            return {}
        try:
            value = safejson.loads(text)  # depth, NaN, huge numbers: refused, never a 500
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"epochs": 2}.')
        try:
            return overrides_clean(value)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from None


def _steps(r: RLHFRound) -> list[dict]:
    order = list(RLHFRound.STEPS)
    current = order.index(r.state) if r.state in order else (len(order) if r.state == "done" else -1)
    out = []
    for i, name in enumerate(order):
        entry = r.steps.get(name, {})
        done, total = entry.get("done", 0), entry.get("total", 0)
        if r.state == "done" or i < current or "finished_at" in entry:
            status_ = "done"
        elif name == r.state or name == r.failed_step:
            status_ = r.state if r.is_finished else "running"
        else:
            status_ = "waiting"
        out.append(
            {
                "name": name,
                "label": STEP_LABELS[name],
                "status": status_,
                "done": done,
                "total": total,
                "phase": entry.get("phase", ""),
                "seconds": entry.get("seconds"),
            }
        )
    return out


def _list_context(project: Project) -> dict:
    return {"project": project, "rounds": list(selectors.rounds_for(project=project)[:50])}


def _page_context(project: Project, form: RoundSettingsForm) -> dict:
    """Everything the rounds page shows: the list, the settings form, the active round, the
    evaluation numbers, checkpoints and policy events."""
    context = _list_context(project)
    context.update(form=form, active=selectors.round_active(project_id=project.pk))
    context.update(_evaluation_list_context(project, context["rounds"]))
    context.update(_policy_context(project))
    return context


@project_page("GET")
def rounds(request, project: Project):
    if request.htmx:
        return render(request, "training/_rounds.html", _list_context(project))
    form = RoundSettingsForm(instance=round_settings_get(project=project))
    return render(request, "training/rounds.html", _page_context(project, form))


def _policy_context(project: Project) -> dict:
    """Checkpoints (each with a rollback form) and the policy events, for the rounds page."""
    return {
        "policies": list(selectors.policy_checkpoints_for(project=project)[:20]),
        "events": list(policy_events_for(project=project)),
        "checkpoints_disk_mb": checkpoints_disk_used(project=project) / 1e6,
    }


@project_page("POST")
def round_settings_save(request, project: Project):
    form = RoundSettingsForm(request.POST, instance=round_settings_get(project=project))
    if form.is_valid():
        try:
            round_settings_update(project=project, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Round settings saved.")
            return redirect("training:rounds", project_id=project.pk)
    return render(request, "training/rounds.html", _page_context(project, form), status=400)


@project_page("POST")
def round_start_view(request, project: Project):
    try:
        r, created = round_start(project=project, requested_by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("training:rounds", project_id=project.pk)
    if created:
        messages.success(request, f"Round {r.number} queued.")
    else:
        messages.info(request, f"Round {r.number} is already running; only one round runs per project.")
    return redirect("training:round", round_id=r.pk)


@require_GET
@role_required(OPERATE)
def round_detail(request, round_id: int):
    r = get_object_or_404(
        RLHFRound.objects.select_related(
            "project", "policy_in", "policy_out", "reference", "reward_model", "reward_run"
        ),
        pk=round_id,
    )
    context = {
        "round": r,
        "project": r.project,
        "held": not r.is_finished and job_is_held(r),
        "steps": _steps(r),
        "metrics": r.metrics,
        "win_rate": selectors.round_win_rate(round=r),
        "lineage": selectors.round_lineage(round=r),
        **_evaluation_context(r),
    }
    if request.htmx:
        return render(request, "training/_round_body.html", context)
    context["pairs"] = list(selectors.round_pairs(round=r))
    context["candidates"] = list(selectors.round_candidates(round=r))
    return render(request, "training/round.html", context)


def _round_action(request, r: RLHFRound, service, done: str):
    to = reverse("training:round", args=[r.pk])
    return page_action(request, partial(service, round_id=r.pk), done.format(number=r.number), to=to)


@row_action(RLHFRound, "round_id")
def round_cancel_view(request, r: RLHFRound):
    return _round_action(request, r, round_cancel, "Cancelling round {number}.")


@row_action(RLHFRound, "round_id")
def round_retry_view(request, r: RLHFRound):
    return _round_action(request, r, round_retry, "Round {number} queued again.")


# --- evaluation: held-out prompts, a round's evaluation, the numbers across rounds -------------


def _evaluation_list_context(project: Project, rounds: list[RLHFRound]) -> dict:
    return {
        **prompt_pool_counts(project=project),
        "series": evaluation_selectors.rounds_evaluation_series(project_id=project.pk, rounds=rounds),
    }


def _evaluation_context(r: RLHFRound) -> dict:
    return {"evaluation": evaluation_selectors.round_evaluation(round=r)}


@row_action(RLHFRound, "round_id")
def round_evaluate_view(request, r: RLHFRound):
    against = request.POST.get("against", "")
    action = partial(round_evaluation_create, round_id=r.pk, against=against, requested_by=request.user)
    done = "Evaluation #{0.pk} queued: its pairs go to the rating queue once generated.".format
    return page_action(request, action, done, to=reverse("training:round", args=[r.pk]))


class EvalPromptsForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=100_000)


@project_page("POST")
def eval_prompts_mark_view(request, project: Project):
    form = EvalPromptsForm(request.POST)
    to = reverse("training:rounds", args=[project.pk])
    if not form.is_valid():
        messages.error(request, "Say how many round prompts to hold out (a whole number ≥ 1).")
        return redirect(to)
    action = partial(prompts_mark_eval, project=project, count=form.cleaned_data["count"], seed=0)
    done = "{0} round prompt(s) are now held-out evaluation prompts.".format
    return page_action(request, lambda: len(action()), done, to=to)


# --- REST API ---------------------------------------------------------------------------------


class RoundSerializer(serializers.ModelSerializer):
    # `state` and `failed_step` are read-only model properties (from the kernel's status and the
    # round's step), kept for clients that read them.
    state = serializers.CharField(read_only=True)
    failed_step = serializers.CharField(read_only=True)

    class Meta:
        model = RLHFRound
        fields = [
            "id", "project", "number", "state", "status", "step", "failed_step", "cancel_requested",
            "trigger", "seed",
            "config", "policy_in", "reference", "policy_out", "reward_model", "reward_run", "prompt_ids",
            "steps", "metrics", "error", "attempts", "created_at", "started_at", "finished_at",
            "evaluation_state", "gate",
        ]  # fmt: skip
        read_only_fields = fields


@project_schema()
class RoundListView(ProjectRowsView):
    """GET: the project's rounds, newest first (200 at most). POST: start a round (or get the
    running one: 200 instead of 201)."""

    serializer_class = RoundSerializer

    def rows(self, project):
        return selectors.rounds_for(project=project)[:200]

    @extend_schema(
        request=None,
        responses={
            201: RoundSerializer,
            200: RoundSerializer,
            **errors_with(ErrorCode.NO_PROMPTS, ErrorCode.CONFLICT),
        },
    )
    def post(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        r, created = round_start(project=project, requested_by=request.user)
        return Response(
            RoundSerializer(r).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class RoundDetailView(OpsApiView):
    @extend_schema(responses={200: RoundSerializer, **ERRORS})
    def get(self, request, round_id: int):
        r = get_object_or_404(RLHFRound, pk=round_id)
        data = RoundSerializer(r).data
        data["win_rate"] = selectors.round_win_rate(round=r)
        return Response(data)


class RoundActionView(ObjectActionView):
    model, serializer_class, lookup = RLHFRound, RoundSerializer, "round_id"


@action_schema(RoundSerializer, ErrorCode.FINISHED)
class RoundCancelView(RoundActionView):
    def act(self, request, pk: int) -> RLHFRound:
        return round_cancel(round_id=pk)


@action_schema(RoundSerializer, ErrorCode.STATE, ErrorCode.RUNNING, ErrorCode.CONFLICT)
class RoundRetryView(RoundActionView):
    def act(self, request, pk: int) -> RLHFRound:
        return round_retry(round_id=pk)


class RoundSettingsSerializer(serializers.ModelSerializer):
    """The project's round settings: every editable field, plus the schedule's beat task state
    (read-only: enabled, last run, run count) and why the guard paused it.

    `n` and `budget`, the names of `candidates_per_prompt` and `pairs_to_publish` before
    release 0003, are still taken on input and shown on output (deprecated)."""

    schedule = serializers.SerializerMethodField()
    n = serializers.IntegerField(
        source="candidates_per_prompt", read_only=True, help_text="Deprecated: candidates_per_prompt."
    )
    budget = serializers.IntegerField(
        source="pairs_to_publish", read_only=True, help_text="Deprecated: pairs_to_publish."
    )

    class Meta:
        model = RoundSettings
        fields = [*EDITABLE_FIELDS, "paused_reason", "updated_at", "schedule", *SETTING_ALIASES]
        read_only_fields = ["paused_reason", "updated_at", "schedule"]

    def to_internal_value(self, data):
        if not hasattr(data, "keys"):
            return super().to_internal_value(data)
        data = {key: data[key] for key in data.keys()}
        for old, new in SETTING_ALIASES.items():
            if old in data:
                value = data.pop(old)
                if new in data and str(data[new]) != str(value):
                    raise serializers.ValidationError(
                        {old: [f"The old name of {new}; give one of them, not both with different values."]}
                    )
                data[new] = value
        return super().to_internal_value(data)

    def get_schedule(self, row: RoundSettings) -> dict:
        task = row.periodic_task
        return {
            "enabled": bool(task and task.enabled),
            "last_run_at": task.last_run_at.isoformat() if task and task.last_run_at else None,
            "total_run_count": task.total_run_count if task else 0,
        }


class RoundSettingsView(OpsApiView):
    """GET: the project's round settings and schedule. PUT / PATCH: change the fields given (the
    others are kept), checked by the same service as the page's form (`round_settings_update`)."""

    @extend_schema(responses={200: RoundSettingsSerializer, **ERRORS})
    def get(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        return Response(RoundSettingsSerializer(round_settings_get(project=project)).data)

    @extend_schema(
        request=RoundSettingsSerializer,
        responses={200: RoundSettingsSerializer, **errors_with(ErrorCode.STATE)},
    )
    def patch(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        parsed = RoundSettingsSerializer(round_settings_get(project=project), data=request.data, partial=True)
        parsed.is_valid(raise_exception=True)
        row = round_settings_update(project=project, **parsed.validated_data)
        return Response(RoundSettingsSerializer(row).data)

    put = patch
