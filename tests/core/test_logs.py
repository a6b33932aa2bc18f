"""core.logs.OneLine, as configured in settings (issue 15 item 12): one line, rate-limited."""

import logging
import time

import pytest

from core.logs import OneLine


@pytest.fixture(autouse=True)
def _fresh_windows():
    """The configured filters count per process: earlier tests' 403s must not have used up this
    test's burst (the result would depend on the order tests run in)."""
    for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]:
        for holder in (logger, *getattr(logger, "handlers", ())):
            for found in getattr(holder, "filters", ()):
                if isinstance(found, OneLine):
                    found._windows.clear()


def _records(caplog, name):
    return [r for r in caplog.records if r.name == name]


@pytest.mark.django_db
def test_403s_log_one_line_each_and_at_most_a_burst(client, make_user, caplog):
    client.force_login(make_user("rater"))
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            assert client.get("/ops/").status_code == 403
    records = _records(caplog, "django.request")
    assert 1 <= len(records) <= 5
    for record in records:
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert "Forbidden" in record.getMessage() and "PermissionDenied" in record.getMessage()


def test_event_send_failures_log_one_line_each_and_at_most_a_burst(caplog):
    """What core.events logs when Redis is down, once per vote: no traceback, no flood."""
    log = logging.getLogger("core.events")
    with caplog.at_level(logging.INFO):
        for _ in range(100):
            try:
                raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            except ConnectionError:
                log.exception("could not send event to %s", "project-1")
    records = _records(caplog, "core.events")
    assert 1 <= len(records) <= 5
    assert all(r.exc_info is None for r in records)
    assert records[0].getMessage() == (
        "could not send event to project-1 (ConnectionError: Error 111 connecting to 127.0.0.1:6379. "
        "Connection refused.)"
    )


def test_the_next_line_after_a_quiet_window_counts_what_was_dropped():
    one_line = OneLine(every_s=0.2, burst=2)

    def record(i):
        return logging.LogRecord("x", logging.WARNING, __file__, 1, "failed %s", (i,), None)

    passed = [one_line.filter(record(i)) for i in range(10)]
    assert passed == [True, True] + [False] * 8
    time.sleep(0.25)
    later = record(10)
    assert one_line.filter(later) and later.getMessage() == "failed 10 [8 more like this not logged]"
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "another kind", (), None)
    assert one_line.filter(other)  # kinds are limited separately


def test_a_500_keeps_its_traceback():
    one_line = OneLine(below="ERROR")
    try:
        raise ValueError("bug")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), sys.exc_info()
        )
    assert one_line.filter(record) and record.exc_info is not None
