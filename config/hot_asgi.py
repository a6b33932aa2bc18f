"""The rating API's two hot endpoints served with one thread hand-off per request.

Django's ASGIHandler runs a sync view under ASGI with several loop/thread hand-offs per request
(the request_started signal, the middleware chain, the response's close and request_finished),
inside a `ThreadSensitiveContext` that starts a new executor thread for every request, plus two
asyncio tasks (the response and a disconnect listener). Profiled under the rating benchmark
(bench/assignment.py --profile, bench/README.md) that machinery cost more of the server's CPU
than the view. For `POST /api/projects/<id>/next/` and `POST /api/comparisons/<id>/preference/`,
`HotPathASGIHandler` reads the body on the event loop, then does what Django's WSGI handler
does (signals, the same middleware, URL resolution, views, permissions) in one call on a
reused worker thread, and sends the response from the loop. Every other request goes to
Django's own handler unchanged. Nothing is cached: each request runs the whole stack.

`HOT_PATH_ASGI=0` (settings) serves everything through Django's handler (the benchmark's
baseline).
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.urls import set_script_prefix

HOT_PATHS = re.compile(r"^/api/(projects/\d+/next|comparisons/\d+/preference)/$")


class HotPathASGIHandler(ASGIHandler):
    """Django's ASGI handler, with the hot endpoints served in one hand-off (see module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._sync = BaseHandler()
        self._sync.load_middleware(is_async=False)
        # A small pool of long-lived threads (each keeps its own database connection handle,
        # which request_finished hands back to the pool after every request).
        self._threads = ThreadPoolExecutor(max_workers=settings.HOT_PATH_THREADS, thread_name_prefix="hot")

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and settings.HOT_PATH_ASGI
            and HOT_PATHS.match(scope["path"])
        ):
            await self._hot(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _hot(self, scope, receive, send) -> None:
        from django.core.exceptions import RequestAborted

        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                self._threads, copy_context().run, self._serve, scope, body_file
            )
            await self.send_response(response, send)
        finally:
            body_file.close()

    def _serve(self, scope, body_file):
        """What WSGIHandler.__call__ does, for one ASGI request: the response, closed (so
        request_finished has run and the database connection is back in the pool)."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self._sync.get_response(request)
        response._handler_class = self.__class__
        response.close()
        return response
