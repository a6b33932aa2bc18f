"""Ops pages: projects with their progress, create / edit a project, import comparisons.

Server-rendered and thin: forms parse, one service or selector does the work. Every page
needs `annotation.operate`; an anonymous visitor is sent to the login page, a logged-in user
without the permission gets 403.
"""

from django import forms
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from annotation import selectors
from annotation.models import Project
from annotation.services.imports import FIELDS, comparisons_import
from annotation.services.jsonl import import_lines
from annotation.services.projects import EDITABLE_FIELDS, QUALITY_FIELDS, project_create, project_update
from annotation.services.prompt_imports import FIELDS as PROMPT_FIELDS
from annotation.services.prompt_imports import prompts_import
from core import roles
from core.errors import ServiceError
from core.permissions import role_required
from core.uploads import upload_limit_text

ERRORS_SHOWN = 500  # the page lists this many bad lines; the count covers all of them


class ProjectForm(forms.ModelForm):
    # The model's check constraints, as field errors the page can show next to the field.
    overlap = forms.IntegerField(
        min_value=1,
        max_value=100,
        initial=3,
        help_text="k: distinct raters per comparison. Applies to comparisons imported from now on.",
    )
    lease_seconds = forms.IntegerField(
        min_value=10,
        max_value=24 * 3600,
        initial=300,
        help_text="Seconds a rater holds a pair before it may go to someone else.",
    )

    def clean(self):
        """Rater-quality settings left empty keep what the project has (its defaults when new)."""
        data = super().clean()
        for name in QUALITY_FIELDS:
            if data.get(name) is None:
                data[name] = getattr(self.instance, name)
        return data

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in QUALITY_FIELDS:
            self.fields[name].required = False

    class Meta:
        model = Project
        fields = EDITABLE_FIELDS
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 14})}


class ImportForm(forms.Form):
    file = forms.FileField(
        label="JSONL file",
        help_text="One JSON object per line; the whole file is checked before anything is written.",
    )

    def options(self) -> dict:
        """Keyword arguments for the import service besides the project and the lines."""
        return {}


class PromptImportForm(ImportForm):
    purpose = forms.ChoiceField(
        choices=[
            ("round", "Round prompt pool (rounds sample from it)"),
            ("eval", "Held-out evaluation prompts (never used for training)"),
        ],
        initial="round",
        required=False,
    )

    def options(self) -> dict:
        return {"purpose": self.cleaned_data.get("purpose") or "round"}


@role_required(roles.OPERATE)
def project_list(request):
    return render(request, "ops/projects.html", {"projects": selectors.projects_with_counts()})


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def project_edit(request, pk: int | None = None):
    project = get_object_or_404(Project, pk=pk) if pk is not None else None
    form = ProjectForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        try:
            if project is None:
                project_create(**form.cleaned_data)
            else:
                project_update(project=project, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("ops-projects")
    return render(request, "ops/project_form.html", {"form": form, "project": project})


def _import_page(request, pk: int, *, service, template: str, fields, extra=None, form_class=ImportForm):
    """An upload form that runs one import service on the file and shows its report."""
    project = get_object_or_404(Project, pk=pk)
    form = form_class(request.POST or None, request.FILES or None)
    report, status = None, 200
    too_large = request.method == "POST" and getattr(request, "upload_too_large", None)
    if too_large:  # core.uploads refused it while it streamed: say so, not "this field is required"
        form = form_class(request.POST, request.FILES)
        form.is_valid()
        form.errors.clear()
        form.add_error(
            None, f"{too_large} is over the upload limit ({upload_limit_text()}); nothing was imported."
        )
        status = 413
    elif request.method == "POST" and form.is_valid():
        try:  # read line by line from the upload's temporary file, within the import limits
            report = service(project=project, lines=import_lines(form.cleaned_data["file"]), **form.options())
        except ServiceError as exc:
            form.add_error(None, exc.message)
            status = exc.status
        else:
            status = 200 if report.ok else 400
    context = {
        "project": project,
        "form": form,
        "report": report,
        "errors_shown": report.errors[:ERRORS_SHOWN] if report else [],
        "fields": fields,
        **(extra(project) if extra else {}),
    }
    return render(request, template, context, status=status)


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def project_import(request, pk: int):
    return _import_page(request, pk, service=comparisons_import, template="ops/import.html", fields=FIELDS)


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def project_prompts_import(request, pk: int):
    """Upload a JSONL prompt pool for RLHF rounds (same checks as `manage.py import_prompts`)."""
    return _import_page(
        request,
        pk,
        service=prompts_import,
        template="ops/prompts_import.html",
        fields=PROMPT_FIELDS,
        extra=lambda project: selectors.prompt_pool_counts(project=project),
        form_class=PromptImportForm,
    )
