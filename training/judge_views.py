"""Ops pages and REST API for judges and judge runs. Thin: parse, call one service, render.

Page: a project's judges page (the judges, a form to start a judge run, the runs with live
progress as an htmx partial, cancel). API: a project's judge runs (list, start), one run,
cancel, and the judges. Every page and endpoint needs `annotation.operate`. Judges are created
with `manage.py judge_create`; their accounts never sign in.
"""

from __future__ import annotations

from functools import partial

from django import forms
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from annotation.models import Project
from core.api import ERRORS
from core.errors import ErrorCode
from training import judge_selectors as selectors
from training.models import Judge, JudgeRun
from training.services.judges import MAX_RATERS, MAX_VOTES, judge_run_cancel, judge_run_create
from training.views import (
    ObjectActionView,
    OpsApiView,
    ProjectCreateView,
    ProjectRowsView,
    action_schema,
    page_action,
    project_page,
    project_schema,
    row_action,
)


class JudgeRunForm(forms.Form):
    judge = forms.ModelChoiceField(queryset=Judge.objects.order_by("name"), empty_label=None)
    raters = forms.IntegerField(
        min_value=1, max_value=MAX_RATERS, initial=1, help_text="Voter accounts (simulated raters only)."
    )
    votes = forms.IntegerField(
        min_value=1, max_value=MAX_VOTES, initial=100, help_text="Stop after this many."
    )
    only_evaluation = forms.BooleanField(required=False, label="Evaluation pairs only")


def _page_url(project_id: int) -> str:
    return reverse("training:judges", args=[project_id])


def _context(project: Project) -> dict:
    return {"project": project, "runs": list(selectors.judge_runs_for(project=project)[:50])}


def _page(request, project: Project, form: JudgeRunForm, *, status: int = 200):
    context = {**_context(project), "judges": list(selectors.judges_all()), "form": form}
    return render(request, "training/judges.html", context, status=status)


@project_page("GET")
def judges(request, project: Project):
    if request.htmx:
        return render(request, "training/_judge_runs.html", _context(project))
    return _page(request, project, JudgeRunForm())


@project_page("POST")
def judge_run_start(request, project: Project):
    form = JudgeRunForm(request.POST)
    if not form.is_valid():
        return _page(request, project, form, status=400)
    action = partial(judge_run_create, project=project, requested_by=request.user, **form.cleaned_data)
    return page_action(request, action, "Queued judge run {0.pk}.".format, to=_page_url(project.pk))


@row_action(JudgeRun, "run_id")
def judge_run_cancel_view(request, run: JudgeRun):
    action = partial(judge_run_cancel, run_id=run.pk)
    return page_action(request, action, f"Cancelling judge run {run.pk}.", to=_page_url(run.project_id))


# --- REST API ---------------------------------------------------------------------------------


class JudgeSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    base = serializers.CharField(source="base.name", default=None, read_only=True)

    class Meta:
        model = Judge
        fields = [
            "id", "name", "kind", "username", "reward_model", "endpoint_url", "endpoint_model", "base",
            "params", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class JudgeRunSerializer(serializers.ModelSerializer):
    judge_name = serializers.CharField(source="judge.name", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", default=None, read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = JudgeRun
        fields = [
            "id", "project", "judge", "judge_name", "raters", "votes_target", "only_evaluation",
            "status", "progress_done", "progress_total", "progress_percent", "cancel_requested",
            "attempts", "error", "metrics", "requested_by", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class JudgeRunStartSerializer(serializers.Serializer):
    judge = serializers.PrimaryKeyRelatedField(queryset=Judge.objects.all())
    raters = serializers.IntegerField(min_value=1, max_value=MAX_RATERS, default=1)
    votes = serializers.IntegerField(min_value=1, max_value=MAX_VOTES, default=100)
    only_evaluation = serializers.BooleanField(default=False)


class JudgeListView(OpsApiView):
    """GET: every judge."""

    @extend_schema(responses={200: JudgeSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(JudgeSerializer(selectors.judges_all(), many=True).data)


@project_schema(ErrorCode.RUNNING)
class JudgeRunListView(ProjectRowsView, ProjectCreateView):
    """GET: the project's judge runs, newest first (200 at most). POST: start one."""

    serializer_class, input_class = JudgeRunSerializer, JudgeRunStartSerializer

    def rows(self, project):
        return selectors.judge_runs_for(project=project)[:200]

    def create(self, request, project, data):
        return judge_run_create(project=project, requested_by=request.user, **data)


class JudgeRunDetailView(OpsApiView):
    @extend_schema(responses={200: JudgeRunSerializer, **ERRORS})
    def get(self, request, run_id: int):
        return Response(JudgeRunSerializer(get_object_or_404(JudgeRun, pk=run_id)).data)


@action_schema(JudgeRunSerializer, ErrorCode.FINISHED)
class JudgeRunCancelView(ObjectActionView):
    model, serializer_class, lookup = JudgeRun, JudgeRunSerializer, "run_id"

    def act(self, request, pk: int) -> JudgeRun:
        return judge_run_cancel(run_id=pk)
