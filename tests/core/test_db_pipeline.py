"""core.db.fetchrows_atomic: statements sent as one batch (BEGIN ... COMMIT, one Sync) are one
transaction: each sees the ones before it, all are kept or none, and after a failure the
connection is usable again."""

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from core.db import fetchone_atomic, fetchrows_atomic

pytestmark = pytest.mark.django_db(transaction=True)  # our own transactions, not a test-wide one


@pytest.fixture
def scratch():
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE scratch (n integer)")
    yield
    with connection.cursor() as cur:
        cur.execute("DROP TABLE scratch")


def _count() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM scratch")
        return cur.fetchone()[0]


def test_each_statement_sees_the_ones_before_and_each_first_row_comes_back(scratch):
    rows = fetchrows_atomic(
        [
            ("INSERT INTO scratch VALUES (%(n)s) RETURNING n", {"n": 1}),
            ("INSERT INTO scratch SELECT n + 1 FROM scratch RETURNING n", {}),
            ("SELECT count(*), sum(n) FROM scratch", {}),
        ]
    )
    assert rows == [(1,), (2,), (2, 3)]
    assert _count() == 2
    assert fetchone_atomic([("SELECT max(n) FROM scratch", {})], durable=False) == (2,)


def test_a_failing_statement_keeps_nothing_and_leaves_the_connection_usable(scratch):
    with pytest.raises(DatabaseError):
        fetchrows_atomic([("INSERT INTO scratch VALUES (1)", {}), ("SELECT 1 / 0", {}), ("SELECT 2", {})])
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert _count() == 0  # the insert before the failure was rolled back


def test_inside_an_atomic_block_the_caller_commits_or_rolls_back(scratch):
    with pytest.raises(RuntimeError), transaction.atomic():
        fetchrows_atomic([("INSERT INTO scratch VALUES (1)", {})])
        assert _count() == 1
        raise RuntimeError("the caller changes its mind")
    assert _count() == 0
