"""A real Celery worker in a subprocess on the test database, for tests that kill or watch it.

The worker consumes the training queue with the solo pool, so killing its pid kills the
process that trains; it uses this run's own Redis database as the broker.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def database_url() -> str:
    s = connection.settings_dict  # NAME is the test database here
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Worker:
    def __init__(self, log: Path, *, env: dict[str, str], name: str = "test"):
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": django_settings.REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **env,
        }
        queue = next(iter(django_settings.CELERY_TASK_ROUTES.values()))["queue"]
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queue,
                "--pool",
                "solo",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{name}-{uuid.uuid4().hex[:8]}@%h",
            ],  # fmt: skip
            cwd=REPO,
            env=full_env,
            stdout=open(log, "wb"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_for(predicate, timeout: float, worker: Worker, what: str, *, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if worker.proc.poll() is not None:
            pytest.fail(f"worker exited while waiting for {what}:\n{worker.tail()}")
        time.sleep(poll)
    pytest.fail(f"timed out waiting for {what}:\n{worker.tail()}")


def wait_finished(job, worker: Worker, what: str, timeout: float = 300):
    """Wait until `job` (a row of a core.jobs.Job model) has finished in `worker`: its row, fresh."""

    def finished():
        row = type(job).objects.get(pk=job.pk)
        return row if row.is_finished else None

    return wait_for(finished, timeout, worker, what)


def advisory_lock_held(namespace: int, key: int) -> bool:
    """Whether any session holds pg_advisory_lock(namespace, key) (a live worker's job lock)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s)",
            [namespace, key],
        )
        return cur.fetchone()[0]
