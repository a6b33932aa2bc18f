"""Live events to websocket groups, sent after the transaction that caused them commits.

Sending is fire-and-forget through one background event loop per process (`_Sender`): the
committing thread only queues the message, and one long-lived loop thread sends them in order
over the channel layer's pooled Redis connections. The previous way, `async_to_sync` from a plain
thread (a Celery task, the benchmark's service threads), started a new thread, a new event loop
and a new Redis connection for every event (the cost per vote is in bench/README.md).
Under ASGI it also kept the request waiting for Redis after its own commit.

asgiref and channels offer no "send from sync code without waiting" helper, hence this small
class. A lost live event never fails or delays the write that caused it: errors are logged,
and if the queue backs up (Redis down) new events are dropped with a warning.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from enum import StrEnum

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # events queued but not yet sent; beyond this new ones are dropped


class Audience(StrEnum):
    """Who hears a project's events: each event goes to one audience's group, and a socket joins
    the groups its user's roles allow (annotation/consumers.py), for projects they may see.

    counters  every role: votes and comparisons added, counts only (never a voter's id)
    research  researchers and ops (`annotation.read_data`): export jobs
    ops       ops (`annotation.operate`): reward-model runs, rounds, evaluations, judge runs
    """

    COUNTERS = "counters"
    RESEARCH = "research"
    OPS = "ops"


def project_group(project_id: int, audience: Audience) -> str:
    return f"project.{project_id}.{audience}"


def user_group(user_id: int) -> str:
    """Every live socket of one user joins this group: how an ended membership reaches sockets
    opened while it lasted (annotation/consumers.py closes them)."""
    return f"user.{user_id}"


class _Sender:
    """One daemon thread running an asyncio loop that sends queued events one after another
    (FIFO, so a job's "succeeded" never overtakes its last progress event).

    Started lazily on first use, restarted in a forked child (Celery's prefork pool), flushed
    at interpreter exit. Thread-safe: `send` may be called from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._thread: threading.Thread | None = None
        self._pending = 0  # queued or being sent; guarded by _lock
        self._idle = threading.Condition(self._lock)

    # -- the loop thread ----------------------------------------------------------------------

    def _start(self) -> None:
        """Start the loop thread (caller holds the lock)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._queue = asyncio.Queue()
            loop.call_soon(ready.set)
            worker = loop.create_task(self._drain())
            try:
                loop.run_until_complete(worker)
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop, self._pid = loop, os.getpid()
        self._pending = 0
        self._thread = threading.Thread(target=run, name="event-sender", daemon=True)
        self._thread.start()
        ready.wait()

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is None:  # close()
                return
            group, message = item
            try:
                layer = get_channel_layer()
                if layer is not None:
                    await layer.group_send(group, message)
            except Exception:  # a lost live update must never fail the write that caused it
                log.exception("could not send event to %s", group)
            finally:
                with self._lock:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()

    # -- any thread ---------------------------------------------------------------------------

    def send(self, group: str, message: dict) -> None:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                self._start()  # first use, or a forked child: the parent's thread is not here
            if self._pending >= MAX_PENDING:
                log.warning("event queue full (%d pending): dropped an event to %s", self._pending, group)
                return
            self._pending += 1
            loop, queue = self._loop, self._queue
        loop.call_soon_threadsafe(queue.put_nowait, (group, message))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued so far has been sent (or failed). False on timeout."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                return True
            return self._idle.wait_for(lambda: not self._pending, timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush, then stop the loop thread. The next `send` starts a new one."""
        self.flush(timeout)
        with self._lock:
            loop, queue, thread = self._loop, self._queue, self._thread
            if loop is None or self._pid != os.getpid() or loop.is_closed():
                return
            self._loop = None
        loop.call_soon_threadsafe(queue.put_nowait, None)
        thread.join(timeout)


_sender = _Sender()
atexit.register(_sender.close, 2.0)


def events_flush(timeout: float = 5.0) -> bool:
    """Block until the events queued by this process so far are sent; False on timeout."""
    return _sender.flush(timeout)


def event_send_on_commit(*, group: str, payload: dict) -> None:
    """Send `payload` to `group` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: event_send_now(group=group, payload=payload))


def access_revoked_on_commit(*, user_id: int, project_id: int) -> None:
    """Once the transaction commits, close `user_id`'s open sockets on `project_id` (4403)."""
    transaction.on_commit(
        lambda: _sender.send(user_group(user_id), {"type": "access.revoked", "project_id": project_id})
    )


def event_send_now(*, group: str, payload: dict) -> None:
    """Queue `payload` for `group` now, whatever the transaction (a job's progress tick, which
    runs outside one and must not wait for Redis). The one send path: through the sender loop."""
    _sender.send(group, {"type": "event.message", "payload": payload})
