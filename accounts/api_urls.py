"""The token API (mounted at /api/auth/)."""

from django.urls import path

from accounts import api

urlpatterns = [
    path("token/", api.TokenObtainView.as_view(), name="api-token"),
    path("tokens/", api.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/", api.TokenRevokeView.as_view(), name="api-token-revoke"),
]
