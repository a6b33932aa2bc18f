"""What a locked-out login gets (django-axes calls this: settings.AXES_LOCKOUT_CALLABLE).

Too many wrong passwords for one account, or from one address (AXES_FAILURE_LIMIT), lock
logins of that account / from that address for AXES_COOLOFF_TIME. The API (`/api/...`) gets
the API's error body with code "locked_out" and 429; the login form gets a page that says so.
Ops lift a lockout early with `manage.py axes_reset_username <name>` / `axes_reset_ip <addr>`
(or delete the access attempt in the Django admin).
"""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

from core.errors import ErrorCode

MESSAGE = (
    "Too many failed logins: logins for this account or from this address are locked for {minutes} minutes."
)


def lockout_response(request, original_response=None, credentials=None):
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = MESSAGE.format(minutes=minutes)
    if request.path.startswith("/api/"):
        code = ErrorCode.LOCKED_OUT
        response = JsonResponse({"detail": message, "code": str(code)}, status=code.status)
    else:
        response = render(
            request, "registration/locked_out.html", {"message": message}, status=ErrorCode.LOCKED_OUT.status
        )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
