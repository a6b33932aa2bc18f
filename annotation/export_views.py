"""Researcher pages for exports: ask for one, watch its progress, download it. Thin: parse the
form, call one service, render. Every view needs `annotation.read_data` (raters get 403).

Small exports stream straight back as the download (the snapshot row is finalised at the end
of the stream); big ones become a Celery job whose row shows a progress bar (htmx polling, and
a websocket nudge on each progress event) and a download link when it is done.
"""

from asgiref.sync import sync_to_async
from django import forms
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotation.exporters import CONTENT_TYPES, FORMATS
from annotation.exporters.filters import TRISTATE, VOTERS, WEIGHTS
from annotation.models import Export, Project
from annotation.selectors import export_get, export_identical_to, exports_for, projects_for
from annotation.services.exports import export_cancel, export_data_path, export_request, export_stream
from core.errors import NotFound, ServiceError
from core.permissions import role_required
from core.roles import READ_DATA
from core.validation import id_from


class ExportForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.none())
    kind = forms.ChoiceField(choices=Export.Kind.choices, initial="trl")
    format = forms.ChoiceField(choices=[(f, f) for f in FORMATS], initial="jsonl")
    rounds = forms.CharField(required=False, help_text="Round ids, comma separated (empty: all).")
    # Text, read by the exports' one time parser (as the API and the command are): a bare date
    # is the start of that day for "since" and the end of that day for "until".
    since = forms.CharField(
        required=False, help_text="Votes cast from this date or date-time (UTC), e.g. 2025-01-31."
    )
    until = forms.CharField(
        required=False,
        help_text="Votes cast up to this date (its whole day, UTC) or before this date-time.",
    )
    min_votes = forms.IntegerField(required=False, min_value=1, initial=1)
    min_agreement = forms.FloatField(required=False, min_value=0, max_value=1, initial=0)
    gold = forms.ChoiceField(choices=[(t, t) for t in TRISTATE], initial="exclude")
    unsafe = forms.ChoiceField(choices=[(t, t) for t in TRISTATE], initial="include")
    voters = forms.ChoiceField(
        choices=[(v, v) for v in VOTERS], initial="all", required=False,
        help_text="Whose votes: all, human raters only, or judges only.",
    )  # fmt: skip
    texts = forms.ChoiceField(
        choices=[("true", "with texts"), ("false", "ids only")], initial="true", required=False,
        help_text="Raw and per-comparison rows: embed the prompt and both responses.",
    )  # fmt: skip
    test_fraction = forms.FloatField(
        required=False, min_value=0, max_value=0.99, initial=0,
        help_text="Share of prompts in a test split (0: no split column).",
    )  # fmt: skip
    seed = forms.IntegerField(required=False, initial=0, help_text="Seed of the split.")
    min_trust = forms.FloatField(
        required=False, min_value=0, max_value=1, initial=0,
        help_text="People's votes only from raters with at least this trust (0: all).",
    )  # fmt: skip
    weights = forms.ChoiceField(
        choices=[(w, w) for w in WEIGHTS], initial="none", required=False,
        help_text="Raw and TRL rows: trust adds a weight column (each vote: its rater's trust).",
    )  # fmt: skip

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_for(user=user)  # the projects they are members of

    def filters(self) -> dict:
        data = self.cleaned_data
        return {
            "rounds": data["rounds"],
            "since": data["since"],
            "until": data["until"],
            "min_votes": data["min_votes"] or 1,
            "min_agreement": data["min_agreement"] or 0,
            "gold": data["gold"],
            "unsafe": data["unsafe"],
            "voters": data.get("voters") or "all",
            "texts": data.get("texts") or "true",
            "test_fraction": data.get("test_fraction") or 0,
            "seed": data.get("seed") or 0,
            "min_trust": data.get("min_trust") or 0,
            "weights": data.get("weights") or "none",
        }


_DONE = object()


async def _async_chunks(chunks):
    """An async iterator over a sync generator, one `next` per thread hop.

    Under ASGI, Django would read a sync iterator to its end before sending anything; this keeps
    the download streaming. thread_sensitive keeps every step (and the database work at the end)
    on the request's one thread; closing early (client gone) closes the generator there too.
    """
    try:
        while True:
            chunk = await sync_to_async(next, thread_sensitive=True)(chunks, _DONE)
            if chunk is _DONE:
                return
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def download_name(export: Export) -> str:
    return f"{export.project.slug}-{export.kind}-{export.pk}.{export.format}"


@role_required(READ_DATA)
@require_http_methods(["GET", "POST"])
def exports_home(request: HttpRequest) -> HttpResponse:
    project = None
    if request.method == "POST":
        form = ExportForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                plan = export_request(
                    project=form.cleaned_data["project"],
                    kind=form.cleaned_data["kind"],
                    fmt=form.cleaned_data["format"],
                    filters=form.filters(),
                    user=request.user,
                )
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                if not plan.stream:
                    return redirect(reverse("export-detail", args=[plan.export.pk]))
                response = StreamingHttpResponse(
                    _async_chunks(export_stream(export_id=plan.export.pk)),
                    content_type=CONTENT_TYPES[plan.export.format],
                )
                response["Content-Disposition"] = f'attachment; filename="{download_name(plan.export)}"'
                response["X-Export-Id"] = str(plan.export.pk)
                return response
        project = form.cleaned_data.get("project") if hasattr(form, "cleaned_data") else None
    else:
        try:
            project_id = id_from(request.GET.get("project"), name="project")
        except ServiceError as exc:
            return HttpResponseBadRequest(exc.message)
        project = projects_for(user=request.user).filter(pk=project_id).first() if project_id else None
        form = ExportForm(initial={"project": project}, user=request.user)
    return render(
        request,
        "exports/home.html",
        {"form": form, "exports": exports_for(user=request.user, project=project), "project": project},
        status=400 if request.method == "POST" else 200,
    )


def _export_or_404(request, export_id: int) -> Export:
    """The export, 404 if it does not exist or belongs to a project the user is no member of."""
    export = export_get(user=request.user, export_id=export_id)
    if export is None:
        raise Http404("No such export.")
    return export


@role_required(READ_DATA)
def export_detail(request: HttpRequest, export_id: int) -> HttpResponse:
    export = _export_or_404(request, export_id)
    template = "exports/_row.html" if request.htmx else "exports/detail.html"
    identical = export_identical_to(export=export, sha256=export.sha256) if export.sha256 else None
    return render(request, template, {"e": export, "detail": True, "identical_to": identical})


def export_file_response(export: Export) -> FileResponse:
    """The export's data file as a download (page and API); NotFound while it has none."""
    response = FileResponse(
        open(export_data_path(export), "rb"),  # noqa: SIM115 - FileResponse closes it
        as_attachment=True,
        filename=download_name(export),
        content_type=CONTENT_TYPES[export.format],
    )
    response["X-Export-Sha256"] = export.sha256
    return response


@role_required(READ_DATA)
def export_download(request: HttpRequest, export_id: int) -> HttpResponse:
    export = _export_or_404(request, export_id)
    try:
        return export_file_response(export)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@role_required(READ_DATA)
@require_POST
def export_cancel_view(request: HttpRequest, export_id: int) -> HttpResponse:
    export = _export_or_404(request, export_id)
    try:
        export = export_cancel(export_id=export.pk, user=request.user)
    except ServiceError:
        export.refresh_from_db()
    if request.htmx:
        return render(request, "exports/_row.html", {"e": export, "detail": True})
    return redirect(reverse("export-detail", args=[export.pk]))
