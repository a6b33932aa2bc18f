"""Rater pages: server-rendered, htmx partials from the same views. Thin: parse, call one service.

Every view answers a full page to a plain request and a partial to an htmx one (`request.htmx`),
so each htmx link is also a working href. Every view needs the `annotation.rate` permission.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.forms import (
    DISPLAY_CHOICES,
    STRENGTHS,
    UNSAFE_CATEGORIES,
    RatingForm,
    ReviseForm,
    SkipForm,
    stored_side,
)
from annotation.models import Comparison, Preference, Project, Response
from annotation.quality.selectors import my_quality
from annotation.selectors import (
    comparison_in_project,
    preference_of,
    preference_revisable,
    progress_for,
    projects_for,
    shown_left_for,
)
from annotation.services.queue import (
    Lease,
    assignment_next,
    assignment_skip,
    preference_submit,
)
from annotation.services.responses import responses_render
from annotation.services.revisions import preference_revise, revise_window_text
from core.errors import ServiceError
from core.permissions import role_perms, role_required
from core.roles import OPERATE, RATE, READ_DATA

ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def _wants_partial(request: HttpRequest) -> bool:
    return bool(request.htmx) and not request.htmx.history_restore_request


def _respond(request, full: str, partial: str, context: dict, status: int = 200) -> HttpResponse:
    template = partial if _wants_partial(request) else full
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _project(request: HttpRequest, project_id: int) -> Project:
    return get_object_or_404(projects_for(user=request.user), pk=project_id)


@dataclass(frozen=True)
class Shown:
    """A pair as the rater sees it: which response is on the left."""

    comparison: Comparison
    left: Response
    right: Response

    @classmethod
    def of_lease(cls, lease: Lease | None) -> "Shown | None":
        return None if lease is None else cls(lease.comparison, lease.left_response, lease.right_response)

    @classmethod
    def of_vote(cls, vote: Preference) -> "Shown":
        c = vote.comparison
        a_left = vote.shown_left == "a"
        return cls(c, *((c.response_a, c.response_b) if a_left else (c.response_b, c.response_a)))


def _turns(shown: Shown | None) -> list[dict]:
    if shown is None:
        return []
    return [
        {
            "role": m.get("role", "user"),
            "label": ROLE_LABELS.get(m.get("role"), "User"),
            "content": m.get("content", ""),
        }
        for m in shown.comparison.prompt.messages
    ]


def _cards(shown: Shown | None, values: dict) -> list[dict]:
    """The two responses as shown: left labelled A, right labelled B, their markdown rendered
    once per response (annotation.services.responses)."""
    if shown is None:
        return []
    responses_render(responses=[shown.left, shown.right])
    return [
        {
            "side": side,
            "label": label,
            "response": response,
            "html": mark_safe(response.text_html),  # noqa: S308 - sanitised by annotation.markdown
            "unsafe": bool(values.get(f"unsafe_{side}")),
            "category": values.get(f"unsafe_{side}_category", ""),
        }
        for side, label, response in (("left", "A", shown.left), ("right", "B", shown.right))
    ]


def _displayed_values(vote: Preference) -> dict:
    """A stored vote in the form's displayed terms (left/right as the rater saw them)."""
    sides = {stored_side("left", vote.shown_left): "left", stored_side("right", vote.shown_left): "right"}
    values = {
        "choice": sides.get(vote.choice, vote.choice),
        "strength": "" if vote.strength is None else str(vote.strength),
        "rationale": vote.rationale,
    }
    for stored, displayed in sides.items():
        values[f"unsafe_{displayed}"] = getattr(vote, f"unsafe_{stored}")
        values[f"unsafe_{displayed}_category"] = getattr(vote, f"unsafe_{stored}_category")
    return values


def _undo(request, project: Project, revising: Preference | None) -> dict | None:
    """The control that opens the rater's last vote again, while it can still be changed."""
    vote = None if revising else preference_revisable(rater=request.user, project=project)
    if vote is None:
        return None
    left = vote.created_at + timedelta(seconds=settings.PREFERENCE_REVISE_SECONDS) - timezone.now()
    return {
        "url": reverse("rater:revise", args=[project.pk, vote.pk]),
        "left_ms": max(0, int(left.total_seconds() * 1000)),  # relative: the browser's clock may be off
        "window": revise_window_text(settings.PREFERENCE_REVISE_SECONDS),
    }


def _pair_context(
    request,
    project: Project,
    shown: Shown | None,
    *,
    revising: Preference | None = None,
    values: dict | None = None,
    error: str = "",
    error_code: str = "",
    skip_error: str = "",
    skip_reason: str = "",
    notice: str = "",
) -> dict:
    values = dict(values or {})
    # One key per lease: a re-render of the same pair keeps the key it was posted with.
    key = values.get("idempotency_key") or ""
    if not 0 < len(key) <= 64:
        key = uuid.uuid4().hex
    if shown is None:
        action = ""
    elif revising is not None:
        action = reverse("rater:revise", args=[project.pk, revising.pk])
    else:
        action = reverse("rater:submit", args=[project.pk, shown.comparison.pk])
    return {
        "project": project,
        "pair": shown.comparison if shown else None,
        "action": action,
        "revising": revising,
        "undo": _undo(request, project, revising),
        "turns": _turns(shown),
        "cards": _cards(shown, values),
        "values": values,
        "idempotency_key": key,
        "choices": DISPLAY_CHOICES,
        "strengths": STRENGTHS,
        "categories": UNSAFE_CATEGORIES,
        "strength_disabled": values.get("choice") in ("tie", "both_bad"),
        "error": error,
        "error_code": error_code,
        "skip_error": skip_error,
        "skip_reason": skip_reason,
        "notice": notice,
        "progress": progress_for(rater=request.user, project=project),
        "my_quality": my_quality(rater_id=request.user.pk, project_id=project.pk),
        "oob": _wants_partial(request),
    }


def _render_pair(
    request, project: Project, lease: Lease | None, *, status: int = 200, shown: Shown | None = None, **extra
) -> HttpResponse:
    """The pair (or the end screen) as a page or a partial. Never stored by the browser: Back or
    Forward must fetch the pair the rater holds now, not one they already rated."""
    context = _pair_context(request, project, shown or Shown.of_lease(lease), **extra)
    response = _respond(request, "annotation/rate.html", "annotation/_pair.html", context, status)
    add_never_cache_headers(response)
    return response


def _rerender_after_error(
    request, project: Project, comparison_id: int, *, status: int, form_values: dict | None = None, **extra
) -> HttpResponse:
    """The rater's current pair again, with the error. The typed values are kept when the pair
    is the one they posted; otherwise (the lease went elsewhere) the pair they now hold is shown."""
    lease = assignment_next(rater=request.user, project=project)
    same = lease is not None and lease.comparison.pk == comparison_id
    return _render_pair(request, project, lease, status=status, values=form_values if same else None, **extra)


# --- pages ---------------------------------------------------------------------------------


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The projects this rater can rate, with their progress; straight to the only one."""
    held = role_perms(request.user)
    if RATE not in held:
        # "/" is where everyone lands after logging in: send the other roles to their pages.
        if OPERATE in held:
            return redirect("/ops/")
        if READ_DATA in held:
            return redirect("/exports/")
        raise PermissionDenied
    projects = list(projects_for(user=request.user))
    if len(projects) == 1:
        return redirect("rater:rate", project_id=projects[0].pk)
    rows = [(p, progress_for(rater=request.user, project=p)) for p in projects]
    return render(request, "annotation/home.html", {"rows": rows})


@require_GET
@role_required(RATE)
def rate(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    lease = assignment_next(rater=request.user, project=project)
    return _render_pair(request, project, lease)


def _after_write(request: HttpRequest, project: Project, notice: str) -> HttpResponse:
    """After a rater's write: the pair they hold now, with `notice` (htmx), else the rating page."""
    if not request.htmx:
        return redirect("rater:rate", project_id=project.pk)
    lease = assignment_next(rater=request.user, project=project)
    return _render_pair(request, project, lease, notice=notice)


@require_POST
@role_required(RATE)
def submit(request: HttpRequest, project_id: int, comparison_id: int) -> HttpResponse:
    project = _project(request, project_id)
    form = RatingForm(request.POST)
    values = request.POST.dict()
    if not form.is_valid():
        return _rerender_after_error(
            request, project, comparison_id, status=400, form_values=values, error=form.first_error()
        )
    left = shown_left_for(project=project, rater=request.user, comparison_id=comparison_id)
    if left is None and not comparison_in_project(project=project, comparison_id=comparison_id):
        raise Http404("No such comparison in this project.")
    # Without a slot of this rater on the pair the service writes nothing, whatever the side.
    kwargs = form.service_kwargs(left=left or "a")
    try:
        result = preference_submit(rater=request.user, comparison_id=comparison_id, **kwargs)
    except ServiceError as err:
        return _rerender_after_error(
            request,
            project,
            comparison_id,
            status=err.status,
            form_values=values,
            error=err.message,
            error_code=err.code,
        )
    notice = "Saved. Here is the next pair." if result.created else "Already saved. Here is the next pair."
    return _after_write(request, project, notice)


@require_http_methods(["GET", "POST"])
@role_required(RATE)
def revise(request: HttpRequest, project_id: int, preference_id: int) -> HttpResponse:
    """GET: the rater's vote on its pair again, to change it; POST: the change (preference_revise),
    then the pair the rater holds now."""
    project = _project(request, project_id)
    vote = preference_of(rater=request.user, preference_id=preference_id)
    if vote is None or vote.comparison.project_id != project.pk:
        raise Http404("You have no such vote in this project.")
    if request.method == "GET":
        return _render_pair(
            request, project, None, shown=Shown.of_vote(vote), revising=vote, values=_displayed_values(vote)
        )
    form = ReviseForm(request.POST)
    if not form.is_valid():
        return _render_pair(
            request,
            project,
            None,
            shown=Shown.of_vote(vote),
            revising=vote,
            status=400,
            values=request.POST.dict(),
            error=form.first_error(),
        )
    try:
        preference_revise(
            rater=request.user, preference_id=vote.pk, **form.service_kwargs(left=vote.shown_left)
        )
    except ServiceError as err:
        lease = assignment_next(rater=request.user, project=project)
        return _render_pair(
            request, project, lease, status=err.status, error=err.message, error_code=err.code
        )
    return _after_write(request, project, "Changed your last vote. Here is your pair again.")


@require_POST
@role_required(RATE)
def skip(request: HttpRequest, project_id: int, comparison_id: int) -> HttpResponse:
    project = _project(request, project_id)
    if not comparison_in_project(project=project, comparison_id=comparison_id):
        raise Http404("No such comparison in this project.")
    form = SkipForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        assignment_skip(rater=request.user, comparison_id=comparison_id, reason=reason)
    except ServiceError as err:
        return _rerender_after_error(
            request, project, comparison_id, status=err.status, skip_error=err.message, skip_reason=reason
        )
    return _after_write(request, project, "Skipped. Here is the next pair.")


@require_GET
@role_required(RATE)
def guidelines(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    return _respond(
        request, "annotation/guidelines.html", "annotation/_guidelines.html", {"project": project}
    )


@require_GET
@role_required(RATE)
def progress(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project(request, project_id)
    context = {"project": project, "progress": progress_for(rater=request.user, project=project)}
    response = render(request, "annotation/_progress.html", context)
    response["Cache-Control"] = "no-store"
    return response
