"""Ops pages and REST API for reward-model runs. Thin: parse, call one service, render.

Pages (server-rendered, htmx partial for the runs table) and the API share one permission:
`annotation.operate`. `project_page`, `page_action` and `ObjectActionView` are also the shape
of the other training pages' and API's (judges, gates, leaderboard, rounds).
"""

from collections.abc import Callable
from functools import partial, wraps

from django import forms
from django.contrib import messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.models import Project
from annotation.selectors import projects_for
from core.api import ERRORS, ApiView, CanOperate, errors_with
from core.errors import ErrorCode, ServiceError
from core.permissions import role_required
from core.roles import OPERATE
from training import selectors
from training.models import RewardModel
from training.services.reward_models import (
    CONFIG_OVERRIDES,
    reward_model_cancel,
    reward_model_promote,
    reward_model_run_create,
)


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
    # Rater quality (annotation.quality): leave out, or weight down, untrusted raters' votes.
    min_trust = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0, label="Min trust",
        help_text="People's votes only from raters with at least this trust (empty or 0: all).",
    )  # fmt: skip
    vote_weights = forms.ChoiceField(
        required=False, label="Vote weights",
        choices=[("", "default (none)"), ("none", "none: every vote weighs 1"), ("trust", "rater's trust")],
    )  # fmt: skip

    gold = forms.ChoiceField(
        required=False, label="Gold pairs",
        choices=[("", "default (leave out)"), ("exclude", "leave out"), ("include", "train on them too")],
        help_text="Votes on gold pairs measure raters; like exports, a run leaves them out unless asked.",
    )  # fmt: skip

    def overrides(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}


def _row_page(method: str, perm: str, lookup: str, rows: Callable[[HttpRequest], QuerySet]):
    """A page of one row: only `method` (405 for others), `perm` (role_required: the login page
    for anonymous visitors, 403 without it), and the view gets the row of `rows(request)` whose
    id is the URL's `lookup` (404 without one) in place of that id."""

    def decorate(view: Callable) -> Callable:
        @require_http_methods([method])
        @role_required(perm)
        @wraps(view)
        def page(request, **kwargs):
            return view(request, get_object_or_404(rows(request), pk=kwargs[lookup]))

        return page

    return decorate


def project_page(method: str, perm: str = OPERATE):
    """A page of one project the user may see (`_row_page`; URL keyword `project_id`)."""
    return _row_page(method, perm, "project_id", lambda request: projects_for(user=request.user))


def row_action(model: type[Model], lookup: str):
    """An ops page's POST action on one row of `model` (`_row_page`; URL keyword `lookup`)."""
    return _row_page("POST", OPERATE, lookup, lambda request: model.objects.all())


def page_action(request, action: Callable, done: str | Callable, *, to: str):
    """Run one service action from an ops page, then go to `to`: a refusal becomes an error
    message, success the message `done` (a text, or a function of what the action returned)."""
    try:
        result = action()
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done(result) if callable(done) else done)
    return redirect(to)


def _runs_url(project_id: int) -> str:
    return reverse("training:reward-models", args=[project_id])


def _runs_context(project: Project) -> dict:
    runs = list(selectors.reward_models_for(project=project))
    for run in runs:
        run.curve_points = selectors.loss_curve_points(run.loss_curve)
    return {"project": project, "runs": runs}


@require_GET
@role_required(OPERATE)
def index(request):
    return render(request, "training/index.html", {"rows": selectors.projects_with_reward_summary()})


@project_page("GET")
def reward_models(request, project: Project):
    context = _runs_context(project)
    if request.htmx:
        return render(request, "training/_runs.html", context)
    context["form"] = RunStartForm()
    context["config_fields"] = sorted(CONFIG_OVERRIDES)
    return render(request, "training/reward_models.html", context)


@project_page("POST")
def reward_model_start(request, project: Project):
    form = RunStartForm(request.POST)
    if not form.is_valid():
        context = _runs_context(project)
        context["form"] = form
        return render(request, "training/reward_models.html", context, status=400)
    action = partial(
        reward_model_run_create, project=project, config_overrides=form.overrides(), requested_by=request.user
    )
    queued = "Queued reward model v{0.version}.".format
    return page_action(request, action, queued, to=_runs_url(project.pk))


@row_action(RewardModel, "run_id")
def reward_model_cancel_view(request, run: RewardModel):
    action = partial(reward_model_cancel, run_id=run.pk)
    return page_action(request, action, f"Cancelling v{run.version}.", to=_runs_url(run.project_id))


@row_action(RewardModel, "run_id")
def reward_model_promote_view(request, run: RewardModel):
    action = partial(reward_model_promote, run_id=run.pk, promoted_by=request.user)
    done = f"v{run.version} is now the active reward model."
    return page_action(request, action, done, to=_runs_url(run.project_id))


# --- REST API ---------------------------------------------------------------------------------


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
            "promotion_note", "gate", "promoted_at", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    config = serializers.DictField(required=False, default=dict)


class OpsApiView(ApiView):
    permission_classes = [CanOperate]


class ObjectActionView(OpsApiView):
    """POST: one service action on one object (404 when there is none), answered with the
    object as it is after the action."""

    model: type[Model]
    serializer_class: type[serializers.Serializer]
    lookup: str  # the URL's keyword for the object's id

    def act(self, request, pk: int) -> Model:
        raise NotImplementedError

    def post(self, request, **kwargs):
        pk = kwargs[self.lookup]
        get_object_or_404(self.model, pk=pk)
        return Response(self.serializer_class(self.act(request, pk)).data)


def action_schema(serializer: type[serializers.Serializer], *conflicts: ErrorCode):
    """The OpenAPI of an `ObjectActionView`: no body in, the object out, 409 with `conflicts`."""
    return extend_schema(request=None, responses={200: serializer, **errors_with(*conflicts)})


class ProjectRowsView(OpsApiView):
    """GET: a project's rows of one kind (`rows`), as `serializer_class` (404 without the
    project). Mixed with `ProjectCreateView` for the POST that starts one."""

    serializer_class: type[serializers.Serializer]

    def rows(self, project: Project):
        raise NotImplementedError

    def get(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        return Response(self.serializer_class(self.rows(project), many=True).data)


class ProjectCreateView(OpsApiView):
    """POST with `input_class`'s body: one service call (`create`) makes a row of the project;
    201 with it as `serializer_class`. 404 without the project, 400 for a body that does not
    parse; the service's refusals go through the one exception handler."""

    serializer_class: type[serializers.Serializer]
    input_class: type[serializers.Serializer]

    def create(self, request, project: Project, data: dict) -> Model:
        raise NotImplementedError

    def post(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        parsed = self.input_class(data=request.data)
        parsed.is_valid(raise_exception=True)
        row = self.create(request, project, parsed.validated_data)
        return Response(self.serializer_class(row).data, status=status.HTTP_201_CREATED)


def project_schema(*conflicts: ErrorCode) -> Callable[[type[OpsApiView]], type[OpsApiView]]:
    """The OpenAPI of a `ProjectRowsView` / `ProjectCreateView`, for whichever methods it has:
    GET the rows; POST the input, 201 with the row, 409 with `conflicts`."""

    def decorate(view: type[OpsApiView]) -> type[OpsApiView]:
        methods = {}
        if issubclass(view, ProjectRowsView):
            methods["get"] = extend_schema(responses={200: view.serializer_class(many=True), **ERRORS})
        if issubclass(view, ProjectCreateView):
            responses = {201: view.serializer_class, **errors_with(*conflicts)}
            methods["post"] = extend_schema(request=view.input_class, responses=responses)
        return extend_schema_view(**methods)(view)

    return decorate


@project_schema(ErrorCode.NO_PREFERENCES)
class RewardModelListView(ProjectRowsView, ProjectCreateView):
    """GET: the project's runs, newest first. POST {"config": {...}}: queue a run."""

    serializer_class, input_class = RewardModelSerializer, RunStartSerializer

    def rows(self, project):
        return selectors.reward_models_for(project=project)

    def create(self, request, project, data):
        return reward_model_run_create(
            project=project, config_overrides=data["config"], requested_by=request.user
        )


class RewardModelDetailView(OpsApiView):
    @extend_schema(responses={200: RewardModelSerializer, **ERRORS})
    def get(self, request, run_id: int):
        return Response(RewardModelSerializer(get_object_or_404(RewardModel, pk=run_id)).data)


class RunActionView(ObjectActionView):
    model, serializer_class, lookup = RewardModel, RewardModelSerializer, "run_id"


@action_schema(RewardModelSerializer, ErrorCode.FINISHED)
class RewardModelCancelView(RunActionView):
    def act(self, request, pk: int) -> RewardModel:
        return reward_model_cancel(run_id=pk)


@action_schema(RewardModelSerializer, ErrorCode.STATUS)
class RewardModelPromoteView(RunActionView):
    def act(self, request, pk: int) -> RewardModel:
        return reward_model_promote(run_id=pk, promoted_by=request.user)
