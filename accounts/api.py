"""The token API: ask for a token with a username and password, list and revoke one's own."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from accounts import tokens
from accounts.serializers import IssuedTokenSerializer, TokenRequestSerializer, TokenSerializer
from core.api import ERRORS, ApiView, ErrorSerializer
from core.errors import ErrorCode, ServiceError

LOCKED = OpenApiResponse(ErrorSerializer, description="Too many failed logins (code `locked_out`).")


class TokenObtainView(ApiView):
    """A new token for a username and password. Each call issues a new one (the secret is not
    kept, so an old one cannot be handed back); wrong passwords count towards the lockout."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={200: IssuedTokenSerializer, 400: ERRORS[400], 429: LOCKED},
    )
    def post(self, request):
        body = TokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # Django's request: django-axes reads the address from it and marks a lockout on it.
        user = authenticate(
            request=request._request,
            username=body.validated_data["username"],
            password=body.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise ServiceError("Unable to log in with the credentials given.", code=ErrorCode.INVALID)
        issued = tokens.token_issue(user=user, name=body.validated_data.get("name") or "api")
        return Response({"token": issued.raw, **TokenSerializer(issued.token).data})


class TokenListView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_tokens_list", responses={200: TokenSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(TokenSerializer(tokens.tokens_of(request.user), many=True).data)


class TokenRevokeView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_token_revoke", responses={204: None, **ERRORS})
    def delete(self, request, token_id: int):
        tokens.token_revoke(user=request.user, token_id=token_id)
        return Response(status=204)
