"""Running the rating hot path's hand-written SQL: prepared, and pipelined where it can be.

Django's cursors bind parameters client-side, so PostgreSQL parses and plans every statement
on every call; for the queue's CTEs planning cost more than running them (measured in
bench/README.md). These helpers use psycopg's server-side-binding cursor with
`prepare=True` on Django's own connection instead: each statement is planned once per pooled
connection. With DB_PREPARED_STATEMENTS off (settings) psycopg ignores `prepare` and these are
plain executes.

Statements still show in Django's query log when it is on (tests counting queries, debug
pages), and database errors come out as django.db exceptions.
"""

from __future__ import annotations

import time

import psycopg
from django.db import connection


def _log(sql: str, params, started: float) -> None:
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{sql} -- {params!r}", "time": f"{time.monotonic() - started:.3f}"}
        )


def _has_rows(cur: psycopg.Cursor) -> bool:
    """Whether the statement returns rows (a SELECT or a RETURNING). Not `cur.description`,
    which builds a Column object per field on every call (3 % of the rating cycle's server CPU
    in bench/assignment.py's profile)."""
    result = cur.pgresult
    return result is not None and result.nfields > 0


def fetchone(sql: str, params: dict) -> tuple | None:
    """Run one statement (in the caller's transaction, or on its own) and return its first row."""
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
        cur.execute(sql, params, prepare=True)
        row = cur.fetchone() if _has_rows(cur) else None
    _log(sql, params, started)
    return row


def fetchone_atomic(statements: list[tuple[str, dict]], *, durable: bool = True) -> tuple | None:
    """Run `statements` in order in one transaction and return the first row of the last one
    (see `fetchrows_atomic`)."""
    return fetchrows_atomic(statements, durable=durable)[-1]


def fetchrows_atomic(statements: list[tuple[str, dict]], *, durable: bool = True) -> list[tuple | None]:
    """Run `statements` in order in one transaction and return each one's first row (or None).

    They go to the server together (psycopg's pipeline mode), with the BEGIN and the COMMIT:
    one network round trip instead of one per statement. The server still runs them one after
    another, each with its own snapshot (READ COMMITTED), so a statement that waits for a
    lock sees what the lock holder committed, and each sees what the ones before it wrote. If
    one fails, nothing of the transaction is kept. Inside the caller's transaction (an atomic
    block) they run in it and the caller commits.

    `durable=False` commits without waiting for the WAL flush (synchronous_commit off for this
    transaction only, never for a caller's): for writes whose loss in a database crash is
    harmless, it saves the commit's WAL fsync from the latency. A crash can then lose the last such commits, never half of one.
    """
    connection.ensure_connection()
    started = time.monotonic()
    raw = connection.connection
    # One cursor per statement: in a pipeline a cursor keeps every result it was given.
    cursors = [psycopg.Cursor(raw) for _ in statements]
    control = psycopg.Cursor(raw)
    own = not connection.in_atomic_block
    try:
        with connection.wrap_database_errors:
            # BEGIN and COMMIT go as plain statements, so the whole transaction is one batch with
            # one Sync at the end: one round trip. (psycopg's `transaction()` in a pipeline syncs
            # after BEGIN and again before COMMIT: three round trips, each a wait for the
            # backend to be scheduled on a busy machine.)
            with raw.pipeline():
                if own:
                    control.execute("BEGIN")
                    if not durable:
                        control.execute("SET LOCAL synchronous_commit TO OFF")
                for cur, (sql, params) in zip(cursors, statements, strict=True):
                    cur.execute(sql, params, prepare=True)
                if own:
                    control.execute("COMMIT")
            rows = [cur.fetchone() if _has_rows(cur) else None for cur in cursors]
    except BaseException:
        # A failed statement makes the server skip the rest of the batch (COMMIT included)
        # and leaves the transaction aborted: end it, so the connection is usable again.
        if own and raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not raw.closed:
            raw.execute("ROLLBACK")
        raise
    finally:
        for cur in [control, *cursors]:
            cur.close()
    for sql, params in statements:
        _log(sql, params, started)
    return rows
