"""Fixtures of the browser tests: the app served as in production (daphne serving config.asgi,
HTTP and websockets, in a subprocess pointed at the test database) and an ORM thread beside
Playwright's event loop. The tests are transactional so that what they write is committed and
the server process sees it; the server is stopped before the database is flushed, and the
rollback is serialized so each test starts from the database as migrated (role groups included).
"""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.annotation.browser.support import CHROMIUM


@pytest.fixture(scope="module", autouse=True)
def _database_as_migrated_afterwards(database_as_migrated_afterwards):
    """Every module here ends with the database as migrated (tests/conftest.py)."""
    yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db.get("HOST") or "", safe="")  # a unix-socket directory is percent-encoded
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system)")
    assert (Path(settings.BASE_DIR) / "static/vendor/htmx.min.js").exists(), "run `make install` (htmx)"
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "daphne.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/accounts/login/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start:\n" + log_path.read_text(errors="replace")[-4000:])
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(log_path.read_text(errors="replace")[-3000:])  # shown when the test fails


@pytest.fixture
def orm():
    """Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls:
    run them on one worker thread (its own connection; the test is transactional)."""
    pool = ThreadPoolExecutor(max_workers=1)

    def call(fn, *args, **kwargs):
        return pool.submit(fn, *args, **kwargs).result(timeout=60)

    yield call
    call(lambda: connection.close())  # the worker thread's own connection
    pool.shutdown()


@pytest.fixture(autouse=True)
def fast_hasher():
    """Not here (it overrides tests/annotation/conftest.py's): the server under test is another
    process, with the real password hashers, and must verify the passwords these tests set."""
