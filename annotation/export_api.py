"""Exports over REST: ask for one, list, look at one, download it, cancel it. Thin views.

POST /api/exports/ counts first: a small export is written in the request and comes back
succeeded (201) with its sha256; a big one is queued as a Celery job (202) whose progress the
client polls at GET /api/exports/<id>/; filters that match no vote are refused (400). The
dataset card is at GET /api/exports/<id>/card/ (text/markdown). Needs `annotation.read_data`
(raters get 403).
"""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound as DRFNotFound
from rest_framework.response import Response

from annotation.export_views import export_file_response
from annotation.exporters import CONTENT_TYPES, FORMATS, KINDS
from annotation.models import Export
from annotation.selectors import export_get, export_identical_to, exports_for, projects_for
from annotation.services.exports import export_cancel, export_request, export_run
from core.api import ERRORS, ApiView, CanReadData
from core.errors import ErrorCode, NotFound
from core.validation import id_from


class ExportAPIView(ApiView):
    permission_classes = [CanReadData]


class ExportInSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=KINDS)
    format = serializers.ChoiceField(choices=FORMATS)
    filters = serializers.DictField(required=False, default=dict)


class ExportSerializer(serializers.ModelSerializer):
    # The public names predate the job kernel's progress_done / progress_total; clients use them.
    rows_done = serializers.IntegerField(source="progress_done", read_only=True)
    rows_expected = serializers.IntegerField(source="progress_total", read_only=True, allow_null=True)
    created_by = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id", "project", "kind", "format", "filters", "delivery", "status", "rows_done",
            "rows_expected", "row_count", "sha256", "bytes", "created_by", "created_at",
            "started_at", "finished_at", "error", "download_url", "cancel_requested", "attempts",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_created_by(self, obj) -> str | None:
        return obj.created_by.get_username() if obj.created_by_id else None

    def get_download_url(self, obj) -> str | None:
        if obj.status != Export.Status.SUCCEEDED:
            return None
        return reverse("api-export-download", args=[obj.pk])


class ExportDetailSerializer(ExportSerializer):
    identical_to = serializers.SerializerMethodField()

    class Meta(ExportSerializer.Meta):
        fields = [*ExportSerializer.Meta.fields, "identical_to"]
        read_only_fields = fields

    def get_identical_to(self, obj) -> int | None:
        """The earlier export with the same bytes (same spec over the same data), if any."""
        if not obj.sha256:
            return None
        earlier = export_identical_to(export=obj, sha256=obj.sha256)
        return earlier.pk if earlier else None


class ExportListView(ExportAPIView):
    @extend_schema(
        operation_id="exports_list",
        parameters=[OpenApiParameter("project", int, required=False)],
        responses={200: ExportSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        project = None
        project_id = id_from(request.query_params.get("project"), name="project")  # 400 if not an id
        if project_id is not None:
            project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        return Response(ExportSerializer(exports_for(user=request.user, project=project), many=True).data)

    @extend_schema(
        operation_id="exports_create",
        request=ExportInSerializer,
        responses={
            201: OpenApiResponse(ExportSerializer, description="Small: written in the request."),
            202: OpenApiResponse(ExportSerializer, description="Big: queued as a job; poll it."),
            **ERRORS,
        },
    )
    def post(self, request):
        data = ExportInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = get_object_or_404(projects_for(user=request.user), pk=data.validated_data["project"])
        plan = export_request(
            project=project,
            kind=data.validated_data["kind"],
            fmt=data.validated_data["format"],
            filters=data.validated_data["filters"],
            user=request.user,
        )
        if plan.stream:
            export = export_run(export_id=plan.export.pk)
            return Response(ExportSerializer(export).data, status=status.HTTP_201_CREATED)
        return Response(ExportSerializer(plan.export).data, status=status.HTTP_202_ACCEPTED)


def _export(request, export_id: int) -> Export:
    """The export, 404 if it does not exist or belongs to a project the caller is no member of."""
    export = export_get(user=request.user, export_id=export_id)
    if export is None:
        raise DRFNotFound("No such export.")
    return export


class ExportDetailView(ExportAPIView):
    @extend_schema(operation_id="exports_get", responses={200: ExportDetailSerializer, **ERRORS})
    def get(self, request, export_id: int):
        return Response(ExportDetailSerializer(_export(request, export_id)).data)


class ExportCardView(ExportAPIView):
    @extend_schema(
        operation_id="exports_card",
        responses={(200, "text/markdown"): OpenApiTypes.STR, **ERRORS},
    )
    def get(self, request, export_id: int):
        export = _export(request, export_id)
        if not export.card:
            raise NotFound("This export has no dataset card yet.", code=ErrorCode.NOT_READY)
        return HttpResponse(export.card, content_type="text/markdown; charset=utf-8")


class ExportDownloadView(ExportAPIView):
    @extend_schema(
        operation_id="exports_download",
        # The file in its format's own content type (annotation.exporters.CONTENT_TYPES).
        responses={**{(200, ct): OpenApiTypes.BINARY for ct in CONTENT_TYPES.values()}, **ERRORS},
    )
    def get(self, request, export_id: int):
        return export_file_response(_export(request, export_id))  # NotFound: 404


class ExportCancelView(ExportAPIView):
    @extend_schema(operation_id="exports_cancel", request=None, responses={200: ExportSerializer, **ERRORS})
    def post(self, request, export_id: int):
        _export(request, export_id)
        return Response(ExportSerializer(export_cancel(export_id=export_id, user=request.user)).data)
