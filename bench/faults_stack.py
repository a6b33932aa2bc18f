"""The production stack bench/faults.py starts for itself and breaks on purpose: its own
PostgreSQL cluster (initdb / pg_ctl, another port), its own redis-server (another port),
uvicorn with several web workers, one Celery worker and Celery beat. Nothing shared is touched:
every process here is one this module started, and only those are signalled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.common import REPO_ROOT, AsgiServer, free_port

PG_USER = "postgres"  # PostgreSQL refuses to run as root: the cluster runs as this user


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise SystemExit(f"bench faults: {name} not found (PostgreSQL server binaries are needed)")


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


class Stack:
    def __init__(self, root: Path, *, web_workers: int, env: dict[str, str]):
        self.root = root
        self.pg_dir, self.pg_port = root / "pgdata", free_port()
        self.redis_port = free_port()
        self.web_workers = web_workers
        self.database_url = f"postgres://postgres@127.0.0.1:{self.pg_port}/rlhf"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.exports_dir, self.models_dir = root / "exports", root / "models"
        self.env = {
            **env,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CHANNELS_PREFIX": "bench-faults",
            "VOTE_FLOOR_MS": "0",  # simulated think times are random; the books count every ack
            "VAR_DIR": str(root / "var"),
            "EXPORTS_DIR": str(self.exports_dir),
            "MODELS_DIR": str(self.models_dir),
            "DJANGO_DEBUG": "0",
            "LOG_LEVEL": "WARNING",
        }
        self.redis: subprocess.Popen | None = None
        self.web: AsgiServer | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.beat: subprocess.Popen | None = None
        self.restarts: dict[str, int] = {}

    # -- PostgreSQL --------------------------------------------------------------------------

    def pg_init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.pg_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.pg_dir, PG_USER)
        subprocess.run(
            _as_pg_user(
                [_pg_bin("initdb"), "-D", str(self.pg_dir), "-A", "trust", "-U", "postgres", "--no-sync"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.pg_start()
        subprocess.run(
            _as_pg_user(
                [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "rlhf"]
            ),
            check=True,
        )

    def pg_ctl(self, *args: str, check: bool = True) -> None:
        options = (
            f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.pg_dir} "
            "-c max_connections=300 -c shared_buffers=64MB"
        )
        cmd = [
            _pg_bin("pg_ctl"),
            "-D",
            str(self.pg_dir),
            "-l",
            str(self.pg_dir / "log"),
            "-o",
            options,
            "-w",
            *args,
        ]
        subprocess.run(_as_pg_user(cmd), check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pg_start(self) -> None:
        self.pg_ctl("start")

    def pg_restart_fast(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def pg_postmaster(self) -> psutil.Process:
        pid = int((self.pg_dir / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def pg_kill(self) -> None:
        """SIGKILL the postmaster and every backend (as a machine loss would), then start again."""
        postmaster = self.pg_postmaster()
        family = [postmaster, *postmaster.children(recursive=True)]
        for proc in family:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)

    def pg_stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast", check=False)

    # -- Redis ---------------------------------------------------------------------------------

    def redis_start(self) -> None:
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],  # fmt: skip
            stdout=open(self.root / "redis.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import redis

                redis.Redis.from_url(self.redis_url).ping()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def redis_stop(self) -> None:
        if self.redis and self.redis.poll() is None:
            self.redis.send_signal(signal.SIGTERM)
            self.redis.wait(timeout=10)

    # -- Django processes --------------------------------------------------------------------

    def manage(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env={**os.environ, **self.env},
            check=check, **kwargs,
        )  # fmt: skip

    def web_start(self) -> None:
        self.web = AsgiServer(
            env=self.env, workers=self.web_workers, log_path=self.root / "web.log", start_timeout_s=180
        ).__enter__()

    def web_worker_pids(self) -> list[int]:
        assert self.web and self.web.proc
        pids = []
        for child in psutil.Process(self.web.proc.pid).children():
            try:  # uvicorn's workers, not multiprocessing's resource tracker (nor a dead one)
                if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue
        return pids

    def _celery(self, *args: str, log: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            stdout=open(self.root / log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL takes the whole worker
        )

    # The Procfile's two workers: "gpu" (training, one process) and "light" (exports, ticks).
    WORKERS = {"gpu": ("gpu", "1"), "light": ("default", "2")}

    def worker_start(self, name: str) -> None:
        queue, concurrency = self.WORKERS[name]
        self.workers[name] = self._celery(
            "worker", "-Q", queue, "--concurrency", concurrency, "-l", "info", "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", log=f"worker-{name}.log",
        )  # fmt: skip

    def worker_kill(self, name: str) -> None:
        """SIGKILL the whole worker (main process and pool children), as a machine loss would."""
        proc = self.workers[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def beat_start(self) -> None:
        self.beat = self._celery("beat", "-l", "info", "-s", str(self.root / "beat-schedule"), log="beat.log")

    def supervise(self) -> None:
        """Restart beat or a worker that died on its own (a supervisor's job)."""
        if self.beat is not None and self.beat.poll() is not None:
            self.restarts["beat"] = self.restarts.get("beat", 0) + 1
            self.beat_start()
        for name, proc in list(self.workers.items()):
            if proc.poll() is not None:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.worker_start(name)

    def stop(self) -> None:
        for proc in (self.beat, *self.workers.values()):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        if self.web:
            self.web.__exit__(None, None, None)
        self.redis_stop()
        self.pg_stop()
