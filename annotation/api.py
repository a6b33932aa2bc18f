"""The rating REST API: next / submit / skip / progress, project listing, the caller's own votes.

Views parse with a serializer and call one service or selector; a `ServiceError` becomes a
response in one place (`core.api.exception_handler`). Same permissions as the pages: rating needs
`annotation.rate`; listing projects needs any role. No endpoint shows another rater's votes.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from annotation import selectors
from annotation.serializers import (
    LeaseSerializer,
    PreferenceInSerializer,
    PreferenceSerializer,
    ProgressSerializer,
    ProjectSerializer,
    SkipInSerializer,
    SkipSerializer,
    preference_in_parse,
)
from annotation.services.queue import assignment_next, assignment_skip, preference_submit
from core.api import ERRORS, ApiView, CanRate, HasAnyRole, errors_with
from core.errors import ErrorCode


class RatingAPIView(ApiView):
    permission_classes = [CanRate]


# --- views --------------------------------------------------------------------------------


class ProjectListView(RatingAPIView):
    permission_classes = [HasAnyRole]

    @extend_schema(operation_id="projects_list", responses={200: ProjectSerializer(many=True), **ERRORS})
    def get(self, request):
        projects = selectors.projects_for(user=request.user)
        return Response(ProjectSerializer(projects, many=True).data)


class NextView(RatingAPIView):
    @extend_schema(
        operation_id="comparison_next",
        request=None,
        responses={
            200: LeaseSerializer,
            204: OpenApiResponse(description="Nothing left for this rater in this project."),
            **ERRORS,
        },
        description="Lease the next comparison (or return the lease already held, `renewed`: true).",
    )
    def post(self, request, project_id: int):
        lease = assignment_next(rater=request.user, project=project_id)  # NotFound: 404
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(LeaseSerializer(lease).data)


class PreferenceSubmitView(RatingAPIView):
    @extend_schema(
        operation_id="preference_submit",
        request=PreferenceInSerializer,
        responses={
            201: PreferenceSerializer,
            200: OpenApiResponse(PreferenceSerializer, description="Replay: the vote stored earlier."),
            **errors_with(ErrorCode.NO_LEASE),
        },
    )
    def post(self, request, comparison_id: int):
        vote = preference_in_parse(request.data)  # = PreferenceInSerializer's validated data
        result = preference_submit(rater=request.user, comparison_id=comparison_id, **vote)
        return Response(
            PreferenceSerializer(result.preference).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class SkipView(RatingAPIView):
    @extend_schema(
        operation_id="comparison_skip",
        request=SkipInSerializer,
        responses={200: SkipSerializer, **errors_with(ErrorCode.NO_LEASE)},
    )
    def post(self, request, comparison_id: int):
        data = SkipInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        skip = assignment_skip(rater=request.user, comparison_id=comparison_id, **data.validated_data)
        return Response(SkipSerializer(skip).data)


class ProgressView(RatingAPIView):
    @extend_schema(operation_id="project_progress", responses={200: ProgressSerializer, **ERRORS})
    def get(self, request, project_id: int):
        project = get_object_or_404(selectors.projects_for(user=request.user), pk=project_id)
        return Response(ProgressSerializer(selectors.progress_for(rater=request.user, project=project)).data)


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


class MyPreferencesView(ListAPIView, RatingAPIView):
    """The caller's own votes, newest first. There is no way to list another rater's votes."""

    serializer_class = PreferenceSerializer
    pagination_class = NewestFirst

    @extend_schema(
        operation_id="preferences_mine",
        parameters=[OpenApiParameter("project", int, description="Only votes in this project.")],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        project = self.request.query_params.get("project") or None
        if project is not None and not project.isdigit():
            raise ValidationError({"project": ["A project id (a whole number)."]})
        project_id = int(project) if project else None
        return selectors.preferences_of(rater=self.request.user, project_id=project_id)
