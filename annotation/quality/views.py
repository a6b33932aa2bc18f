"""The raters page for ops: every rater's quality, the project's agreement panel, and the state
override (with its recorded reason). Thin: parse, one selector or service."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.models import GoldPromotion, Project, RaterState, RaterStateChange
from annotation.quality.gold import comparison_gold_promote, gold_candidates
from annotation.quality.selectors import SORTS, quality_panel, raters_rows
from annotation.quality.service import quality_refresh, rater_state_override
from core import roles
from core.errors import ServiceError
from core.permissions import role_required


class OverrideForm(forms.Form):
    rater_id = forms.IntegerField(widget=forms.HiddenInput)
    state = forms.ChoiceField(choices=RaterState.State.choices)
    reason = forms.CharField(max_length=500)
    pin = forms.BooleanField(required=False, initial=True, help_text="Keep this state (automatic update off)")


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def raters_page(request, pk: int):
    project = get_object_or_404(Project, pk=pk)
    error = ""
    if request.method == "POST":
        if request.POST.get("action") == "refresh":
            quality_refresh(project=project)
            return redirect("ops-project-raters", pk=project.pk)
        form = OverrideForm(request.POST)
        if form.is_valid():
            try:
                rater_state_override(
                    project=project,
                    rater_id=form.cleaned_data["rater_id"],
                    state=form.cleaned_data["state"],
                    reason=form.cleaned_data["reason"],
                    by=request.user,
                    pin=form.cleaned_data["pin"],
                )
                return redirect("ops-project-raters", pk=project.pk)
            except ServiceError as err:
                error = err.message
        else:
            error = "Choose a state and say why."
    sort = request.GET.get("sort", "trust")
    descending = request.GET.get("dir") == "desc"
    context = {
        "project": project,
        "rows": raters_rows(project=project, sort=sort, descending=descending),
        "sort": sort if sort in SORTS else "trust",
        "descending": descending,
        "columns": [
            ("rater", "Rater"),
            ("votes", "Votes"),
            ("gold", "Gold accuracy"),
            ("agreement", "Agreement"),
            ("too_fast", "Too fast"),
            ("left", "Left share"),
            ("trust", "Trust"),
            ("state", "State"),
            ("last_active", "Last active"),
        ],  # fmt: skip
        "panel": quality_panel(project=project),
        "changes": RaterStateChange.objects.filter(project=project)
        .select_related("rater", "by")
        .order_by("-at")[:20],
        "states": RaterState.State.choices,
        "gold": gold_candidates(project=project),
        "promotions": GoldPromotion.objects.filter(project=project).select_related("by").order_by("-at")[:10],
        "error": error,
    }
    return render(request, "ops/raters.html", context, status=400 if error else 200)


@role_required(roles.OPERATE)
@require_POST
def gold_promote(request, pk: int):
    """Promote a gold candidate of the raters page (its majority becomes the gold answer)."""
    project = get_object_or_404(Project, pk=pk)
    try:
        comparison_id = int(request.POST.get("comparison_id", ""))
    except ValueError:
        comparison_id = 0
    try:
        done = comparison_gold_promote(project=project, comparison_id=comparison_id, by=request.user)
        messages.success(request, f"Pair {done.comparison_id} is gold now (answer: {done.choice}).")
    except ServiceError as err:
        messages.error(request, err.message)
    return redirect(reverse("ops-project-raters", kwargs={"pk": project.pk}) + "#gold-candidates")
