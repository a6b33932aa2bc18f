"""The signed-in user's API tokens: list, create (the secret shown once), revoke."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import tokens
from core.errors import ServiceError


@never_cache
@login_required
def token_list(request):
    issued = None
    if request.method == "POST":
        issued = tokens.token_issue(user=request.user, name=request.POST.get("name", "").strip() or "page")
    return render(
        request, "accounts/tokens.html", {"tokens": tokens.tokens_of(request.user), "issued": issued}
    )


@require_POST
@login_required
def token_revoke(request, token_id: int):
    try:
        tokens.token_revoke(user=request.user, token_id=token_id)
        messages.success(request, "Token revoked: it no longer works.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("accounts-tokens")
