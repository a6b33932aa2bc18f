"""Helpers shared by the benchmarks in bench/: percentiles, tables, CPU/RSS, a server subprocess.

Plain standard library plus psutil (already a dependency); nothing here imports Django, so a
load-generator subprocess can use it without paying for Django's start-up.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"

# One plausible sentence of a model's answer: the benches repeat it for responses of a realistic
# length (assignment.py, export.py).
RESPONSE_FILLER = (
    "Here is a careful answer that explains the steps, names the trade-offs and ends with a short "
    "summary so the reader can check it quickly."
)


HH_FILE = REPO_ROOT / "tests" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def hh_parse(lines) -> list[dict]:
    """HH-RLHF lines through the importer's parser, as {index, messages, chosen, rejected,
    transcript} (index: the line's position in `lines`); malformed pairs, pairs with no prompt
    and pairs with the same text on both sides are left out, as the importer leaves them."""
    import json

    from annotation.formats import split_hh_pair

    out = []
    for i, line in enumerate(lines):
        row = json.loads(line)
        try:
            messages, chosen, rejected = split_hh_pair(row["chosen"], row["rejected"])
        except ValueError:
            continue
        if messages and chosen != rejected:
            out.append(
                {
                    "index": i,
                    "messages": messages,
                    "chosen": chosen,
                    "rejected": rejected,
                    "transcript": row["chosen"],
                }
            )
    return out


def hh_pairs() -> list[dict]:
    """The HH harmless test pairs in file order (`hh_parse`), those with an empty side left out too."""
    import gzip

    with gzip.open(HH_FILE, "rt", encoding="utf-8") as fh:
        rows = hh_parse(line for line in fh)
    return [r for r in rows if r["chosen"].strip() and r["rejected"].strip()]


def duel(a: float, b: float) -> float:
    """One comparison's outcome for the side scored `a`: 1 win, 0.5 tie, 0 loss."""
    return 1.0 if a > b else 0.5 if a == b else 0.0


def filler_response(label: str, times: int) -> str:
    """`label`, then RESPONSE_FILLER `times` over: a response of a realistic length."""
    return f"{label}. " + " ".join([RESPONSE_FILLER] * times)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks; nan if empty.

    statistics.quantiles needs n >= 2 and returns all cut points; one value is all we need.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fmt(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, file=None) -> None:
    """A plain fixed-width table: first column left-aligned, the rest right-aligned."""
    out = file or sys.stdout
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts)

    print(line(cells[0]), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells[1:]:
        print(line(row), file=out)
    out.flush()


def peak_rss_mb(*, children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds used so far by a process (default: this one)."""
    times = psutil.Process(pid or os.getpid()).cpu_times()
    return times.user + times.system


def database_url_with_name(url: str, name: str) -> str:
    """The same server and credentials, another database name."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_recreate(admin_url: str, name: str) -> None:
    """Drop (forcing other sessions off) and create database `name` on admin_url's server."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_drop(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def add_database_args(parser: argparse.ArgumentParser, *, db_name: str, redis_url: str) -> None:
    """--database-url, --db-name, --redis-url and --keep-db: where a benchmark makes its own database."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="any database on the server to use; the benchmark creates its own next to it (--db-name)",
    )
    parser.add_argument("--db-name", default=db_name, help="database to (re)create")
    parser.add_argument("--redis-url", default=redis_url)
    parser.add_argument("--keep-db", action="store_true", help="leave the database behind for inspection")


@contextmanager
def bench_database(admin_url: str, name: str, *, keep: bool = False, recreate: bool = True) -> Iterator[str]:
    """Database `name` on admin_url's server for the `with` block (made afresh unless `recreate`
    is False); yields its URL and drops it at the end unless `keep`."""
    if recreate:
        database_recreate(admin_url, name)
    try:
        yield database_url_with_name(admin_url, name)
    finally:
        if not keep:
            database_drop(admin_url, name)


def bench_env(database_url: str, redis_url: str, channels_prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's Django processes: its own database, Redis and channel
    prefix, no debug, warnings only. The per-rater API throttles stay in the path (their cost
    is measured) at a rate no simulated rater reaches, and simulated raters that vote at once
    are not refused as too fast (no floor on time on task) unless a bench asks for one."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CHANNELS_PREFIX": channels_prefix,
        "RATING_THROTTLE_RATE": "1000000/min",
        "PROGRESS_THROTTLE_RATE": "1000000/min",
        "VOTE_FLOOR_MS": "0",
        **extra,
        "DJANGO_DEBUG": "0",
        "LOG_LEVEL": "WARNING",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SERVERS = ("uvicorn", "daphne")


@dataclass
class AsgiServer:
    """The real ASGI app in a server subprocess, for as long as the `with` block lasts.

    `server` is "uvicorn" (what the Procfile runs: httptools + uvloop, `workers` processes
    sharing the socket) or "daphne" (one process; `workers` must be 1). `env` is merged over
    this process's environment (DATABASE_URL, REDIS_URL, ...). stdout and stderr go to
    `log_path` so a failing server can be diagnosed after the run.
    """

    app: str = "config.asgi:application"
    env: dict[str, str] | None = None
    port: int = 0
    log_path: Path | None = None
    start_timeout_s: float = 60.0
    server: str = "uvicorn"
    workers: int = 1
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def description(self) -> str:
        return f"{self.server}, {self.workers} worker process{'es' if self.workers != 1 else ''}"

    def command(self) -> list[str]:
        bin_dir = Path(sys.executable).parent
        if self.server == "daphne":
            if self.workers != 1:
                raise ValueError("daphne runs one process; use uvicorn for several workers")
            return [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), self.app]
        if self.server == "uvicorn":
            return [
                str(bin_dir / "uvicorn"),
                self.app,
                "--host=127.0.0.1",
                f"--port={self.port}",
                f"--workers={self.workers}",
                "--lifespan=off",  # Django's ASGI handler has no lifespan protocol
                "--no-access-log",
                "--log-level=warning",
            ]
        raise ValueError(f"unknown server {self.server!r} (one of {', '.join(SERVERS)})")

    def __enter__(self) -> AsgiServer:
        self.port = self.port or free_port()
        env = {**os.environ, **(self.env or {})}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            # Several workers: listening means the socket is bound, not that every worker
            # has imported Django; wait until all of them are there.
            if len(self._processes()) >= self.workers + (1 if self.workers > 1 else 0):
                return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.server} did not listen on port {self.port} within {self.start_timeout_s}s")

    def _processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """CPU used so far by the server: its process, its workers and their threads."""
        total = 0.0
        for proc in self._processes():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss_mb(self) -> float:
        """Resident memory of the server and its workers together, MiB."""
        return sum(p.memory_info().rss for p in self._processes()) / 2**20

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def postgres_cpu_snapshot(database: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to `database` (this machine).

    A backend's process title is "postgres: ... <user> <database> <client> <state>".
    """
    snapshot = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        title = " ".join(proc.info["cmdline"] or [])
        times = proc.info["cpu_times"]
        if title.startswith("postgres:") and f" {database} " in title and times:
            snapshot[proc.info["pid"]] = times.user + times.system
    return snapshot


def postgres_cpu_since(database: str, before: dict[int, float]) -> float:
    """CPU the backends of `database` used since `before` (a postgres_cpu_snapshot).

    Backends that exited in between are left out (their last stretch is lost, not subtracted),
    so measure over long-lived connections: pools, or connections held through the phase.
    """
    now = postgres_cpu_snapshot(database)
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
