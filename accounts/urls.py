"""Account pages (mounted at /accounts/)."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("tokens/", views.token_list, name="accounts-tokens"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke, name="accounts-token-revoke"),
]
