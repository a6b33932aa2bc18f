"""PostgreSQL advisory locks, with one registry of their namespaces.

Every advisory lock of the project is `(namespace, key)` with a namespace from `LockNamespace`,
so two features can never pick the same number by accident.

Session locks (`job_lock`) mark which worker is running a job: held across the job's many
transactions, they go away with the worker's connection when the worker dies, so a retry can
take over and a cancel can tell a dead job from a live one without guessing from timestamps.
Transaction locks (`xact_lock`) serialise short writes and end with the transaction.
"""

import logging
import time
from contextlib import contextmanager
from enum import IntEnum

from django.db import connection

log = logging.getLogger(__name__)


class LockNamespace(IntEnum):
    RATER = 7_001  # xact: one rater's queue calls, one at a time
    REWARD_RUN = 7_002  # session: the worker training a reward-model run
    PREFERENCE_IMPORT = 7_003  # xact: one preference import per project at a time
    EXPORT = 7_004  # session: the worker writing an export
    ROUND = 7_005  # session: the worker running a round
    JUDGE_RUN = 7_006  # session: the worker running a judge run
    EVALUATION = 7_007  # session: the worker writing an evaluation
    QUALITY = 7_008  # xact: one rater-quality refresh per project at a time


def xact_lock(namespace: LockNamespace, key: int) -> None:
    """pg_advisory_xact_lock(namespace, key): wait for it; released when the transaction ends."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [int(namespace), key])


@contextmanager
def job_lock(namespace: LockNamespace, key: int, *, wait_s: float):
    """Hold pg_advisory_lock(namespace, key); yields False if another live worker keeps it for
    `wait_s` (a worker that was just killed may hold it for a moment until PostgreSQL notices)."""
    deadline = time.monotonic() + wait_s
    while True:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [int(namespace), key])
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
                    cur.execute("SELECT pg_advisory_unlock(%s, %s)", [int(namespace), key])
            except Exception:  # the connection is gone: so is the lock
                log.warning("could not release advisory lock (%s, %s)", namespace, key)


def job_lock_held(namespace: LockNamespace, key: int) -> bool:
    """True while some worker holds the job's lock (i.e. is running it right now)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [int(namespace), key])
        got = cur.fetchone()[0]
        if got:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [int(namespace), key])
    return not got
