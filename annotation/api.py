"""The rating REST API: next / submit / skip / progress, project listing, the caller's own votes.

Views parse with a serializer, call one service or selector and map `ServiceError` to a
response in one place (`api_exception_handler`). Same permissions as the pages: rating needs
`annotation.rate`; listing projects needs any role. No endpoint shows another rater's votes.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from annotation import roles, selectors
from annotation.errors import ServiceError, error_response
from annotation.models import Project
from annotation.permissions import RoleTokenAuthentication, role_perms
from annotation.serializers import (
    ErrorSerializer,
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

# --- errors -----------------------------------------------------------------------------


def _first_message(detail) -> str:
    """'field: message' for the first error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def api_exception_handler(exc, context):
    """Every error as {"detail": message, "code": code} (+ "errors" per field on a 400 parse)."""
    if isinstance(exc, ServiceError):
        return error_response(exc)
    # Django's own Http404 / PermissionDenied as the DRF exceptions they stand for.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, APIException):
        return response
    if isinstance(exc, ValidationError):
        response.data = {"detail": _first_message(exc.detail), "code": "invalid", "errors": exc.detail}
    else:
        codes = exc.get_codes()
        response.data = {**response.data, "code": codes if isinstance(codes, str) else exc.default_code}
    return response


# --- permissions --------------------------------------------------------------------------


# Both ask `role_perms` (annotation/permissions.py): what `user.has_perm` would answer, in one
# query, or none after token auth, which loads the role permissions with the token.
class CanRate(BasePermission):
    def has_permission(self, request, view) -> bool:
        return roles.RATE in role_perms(request.user)


class HasAnyRole(BasePermission):
    def has_permission(self, request, view) -> bool:
        return bool(role_perms(request.user))


class RatingAPIView(APIView):
    # Token first so that an anonymous call gets 401 with `WWW-Authenticate: Token`
    # (DRF takes the challenge from the first class; session auth has none and gives 403).
    authentication_classes = [RoleTokenAuthentication, SessionAuthentication]
    permission_classes = [CanRate]

    def get_exception_handler(self):
        return api_exception_handler


ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer, description="The request does not parse or the service refuses it."
    ),
    401: OpenApiResponse(ErrorSerializer, description="Not logged in / no token."),
    403: OpenApiResponse(ErrorSerializer, description="Missing the role this endpoint needs."),
    404: OpenApiResponse(ErrorSerializer, description="No such project or comparison."),
}


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
            409: OpenApiResponse(ErrorSerializer, description="No live lease on this comparison."),
            **ERRORS,
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
        responses={200: SkipSerializer, 409: ErrorSerializer, **ERRORS},
    )
    def post(self, request, comparison_id: int):
        data = SkipInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        skip = assignment_skip(rater=request.user, comparison_id=comparison_id, **data.validated_data)
        return Response(SkipSerializer(skip).data)


class ProgressView(RatingAPIView):
    @extend_schema(operation_id="project_progress", responses={200: ProgressSerializer, **ERRORS})
    def get(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
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
