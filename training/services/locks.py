"""Session advisory locks that mark which worker is running a job (a reward run, a round).

A session lock (not a transaction lock) is held across the job's many transactions and goes
away with the worker's connection when the worker dies, so a retry can take over.
"""

import logging
import time
from contextlib import contextmanager

from django.db import connection

log = logging.getLogger(__name__)


@contextmanager
def job_lock(namespace: int, key: int, *, wait_s: float):
    """Hold pg_advisory_lock(namespace, key); yields False if another live worker keeps it for
    `wait_s` (a worker that was just killed may hold it for a moment until PostgreSQL notices)."""
    deadline = time.monotonic() + wait_s
    while True:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
            got = cur.fetchone()[0]
        if got or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
            except Exception:  # the connection is gone: so is the lock
                log.warning("could not release advisory lock (%s, %s)", namespace, key)


def job_lock_held(namespace: int, key: int) -> bool:
    """True while some worker holds the job's lock (i.e. is running it right now)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, key])
        got = cur.fetchone()[0]
        if got:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, key])
    return not got
