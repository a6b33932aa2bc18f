"""Middleware that shapes how Django runs the rest of the stack under ASGI, and the CSP header."""

import csp.middleware
from django.core.exceptions import DisallowedHost


class SyncMiddlewareChain:
    """Run the whole middleware stack synchronously, in one thread per request.

    Under ASGI Django builds the stack from the innermost middleware out and keeps each one in
    async mode for as long as it can. WhiteNoise is sync-only, so the stack turned sync above
    it and stayed async below it: every `MiddlewareMixin` below (sessions, common, CSRF, auth,
    messages, clickjacking) then ran each of its hooks through its own `sync_to_async` call, a
    hand-off to the request's thread and back, about fifteen per request. Profiled on the
    rating API (bench/assignment.py) those hand-offs cost more server CPU than the view.

    Being sync-only and last in MIDDLEWARE, this makes Django adapt once, here, and run every
    middleware above it in sync mode in the request's thread. It changes no request or
    response. Remove it once every middleware in the stack is async-capable, or if the views
    become async (then it would add hand-offs instead of saving them).
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class CSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp's middleware (policy in settings.CONTENT_SECURITY_POLICY), plus the live
    websocket: `connect-src 'self'` covers ws:/wss: of the same host only in browsers that
    follow CSP level 3, so the request's own host is named with both schemes."""

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:  # the 400 for a foreign Host header: no origin to add
            return parts
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts
