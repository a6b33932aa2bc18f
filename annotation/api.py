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

from accounts.throttles import ProgressThrottle, RatingThrottle
from annotation import selectors
from annotation.serializers import (
    LeaseSerializer,
    PreferenceInSerializer,
    PreferenceSerializer,
    PreferenceWithNextSerializer,
    ProgressSerializer,
    ProjectSerializer,
    SkipInSerializer,
    SkipSerializer,
    preference_in_parse,
)
from annotation.services.queue import assignment_next, assignment_skip, preference_submit
from core.api import ERRORS, ApiView, CanRate, HasAnyRole, errors_with
from core.errors import ErrorCode
from core.validation import id_from


class RatingAPIView(ApiView):
    permission_classes = [CanRate]
    throttle_classes = [RatingThrottle]  # a human ceiling per rater (accounts/throttles.py)


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


_FLAG = {"": False, "0": False, "false": False, "1": True, "true": True}


class PreferenceSubmitView(RatingAPIView):
    @extend_schema(
        operation_id="preference_submit",
        request=PreferenceInSerializer,
        parameters=[
            OpenApiParameter(
                "next",
                bool,
                description="Also lease the next pair of this comparison's project and return it as "
                "`next` (what `comparison_next` would answer; null: nothing left): a rating cycle in "
                "one request. On an error (e.g. 409 no lease) the pair is still leased; `comparison_next` "
                "gives it back.",
            )
        ],
        responses={
            201: PreferenceWithNextSerializer,
            200: OpenApiResponse(
                PreferenceWithNextSerializer, description="Replay: the vote stored earlier."
            ),
            **errors_with(ErrorCode.NO_LEASE),
        },
    )
    def post(self, request, comparison_id: int):
        vote = preference_in_parse(request.data)  # = PreferenceInSerializer's validated data
        then_next = _FLAG.get(request.query_params.get("next", "").lower())
        if then_next is None:
            raise ValidationError({"next": ["true or false."]})
        result = preference_submit(
            rater=request.user, comparison_id=comparison_id, then_next=then_next, **vote
        )
        body = PreferenceSerializer(result.preference).data
        if then_next:
            body["next"] = LeaseSerializer(result.next_lease).data if result.next_lease else None
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


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
    throttle_classes = [ProgressThrottle]

    @extend_schema(operation_id="project_progress", responses={200: ProgressSerializer, **ERRORS})
    def get(self, request, project_id: int):
        project = get_object_or_404(selectors.projects_for(user=request.user), pk=project_id)
        return Response(
            ProgressSerializer(selectors.progress_cached(rater=request.user, project=project)).data
        )


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
        project_id = id_from(self.request.query_params.get("project"), name="project")
        return selectors.preferences_of(rater=self.request.user, project_id=project_id)
