"""The REST API's shared parts: one exception handler, one base view, the role permissions.

Every API view derives from `ApiView` (or mixes it in): the same authentication order
everywhere (token first, so an anonymous call gets 401 with `WWW-Authenticate: Token`; DRF
takes the challenge from the first class and session auth has none), and errors through
`exception_handler` (set in settings' REST_FRAMEWORK), so every refusal has the body
`{"detail": message, "code": code}` (+ `errors` per field when the request does not parse)
and the status its code carries (HackSoft's Django-Styleguide `api/exception_handlers.py`).
Views never catch `ServiceError` themselves.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core import roles
from core.errors import ErrorCode, ServiceError
from core.permissions import RoleTokenAuthentication, role_perms


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, on a request that does not parse.",
    )


def error_response(exc: ServiceError) -> Response:
    """A ServiceError as the API's JSON error body, with the status its code carries."""
    return Response({"detail": exc.message, "code": str(exc.code)}, status=exc.status)


def _first_message(detail) -> str:
    """'field: message' for the first error in a DRF ValidationError detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc, context):
    """Every API error as {"detail": message, "code": code} (+ "errors" per field on a 400 parse)."""
    if isinstance(exc, ServiceError):
        return error_response(exc)
    # Django's own Http404 / PermissionDenied as the DRF exceptions they stand for.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _first_message(exc.detail), "code": "invalid", "errors": exc.detail}
    else:
        codes = exc.get_codes()
        response.data = {**response.data, "code": codes if isinstance(codes, str) else exc.default_code}
    return response


# --- permissions --------------------------------------------------------------------------
# All ask `role_perms` (core/permissions.py): what `user.has_perm` would answer, in one query,
# or none after token auth, which loads the role permissions with the token.


def _role_permission(name: str, perm: str) -> type[BasePermission]:
    """A DRF permission class that admits users holding the role permission `perm`."""

    def has_permission(self, request, view) -> bool:
        return perm in role_perms(request.user)

    return type(name, (BasePermission,), {"has_permission": has_permission, "__doc__": f"Needs {perm}."})


CanRate = _role_permission("CanRate", roles.RATE)
CanReadData = _role_permission("CanReadData", roles.READ_DATA)
CanOperate = _role_permission("CanOperate", roles.OPERATE)


class HasAnyRole(BasePermission):
    def has_permission(self, request, view) -> bool:
        return bool(role_perms(request.user))


class ApiView(APIView):
    """The base of every API view: one authentication order, one error shape."""

    authentication_classes = [RoleTokenAuthentication, SessionAuthentication]
    permission_classes = [HasAnyRole]


ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer, description="The request does not parse or the service refuses it."
    ),
    401: OpenApiResponse(ErrorSerializer, description="Not logged in / no token."),
    403: OpenApiResponse(ErrorSerializer, description="Missing the role this endpoint needs."),
    404: OpenApiResponse(ErrorSerializer, description="No such object."),
    409: OpenApiResponse(ErrorSerializer, description="The object's state does not allow this now."),
}


def errors_with(*conflicts: ErrorCode) -> dict:
    """`ERRORS`, its 409 naming the codes this endpoint answers it with (clients branch on them)."""
    codes = ", ".join(f"`{c}`" for c in conflicts)
    return {
        **ERRORS,
        409: OpenApiResponse(
            ErrorSerializer, description=f"The object's state does not allow this now (code {codes})."
        ),
    }


def not_found(request, exception=None):
    """handler404 (config/urls.py): a URL no route matches (`/api/comparisons/-1/skip/`) is the
    API's JSON 404 under /api/, Django's page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": str(ErrorCode.NOT_FOUND)}, status=404)
    return page_not_found(request, exception)
