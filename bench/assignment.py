"""Rating-queue benchmark (issue 2): next + submit against the real ASGI server and PostgreSQL.

    .venv/bin/python bench/assignment.py            # default: 10,000 pairs, k=3, ~20 s phases
    .venv/bin/python bench/assignment.py --quick    # smoke run: 2,000 pairs, 3 s phases

Phases, each on its own freshly seeded project so none starves another (k votes per pair):
  floor     bare SQL through psycopg, 16 connections: SELECT ... FOR UPDATE SKIP LOCKED on an
            open slot + UPDATE lease (returning the texts); INSERT vote + UPDATE slot + counter
  service   assignment_next + preference_submit called directly, 1 / 4 / 16 threads, each
            with its own database connection
  http      closed loop, 1 / 4 / 16 raters (own token each, one request chain each, no pause)
            through the ASGI server serving config.asgi:application: uvicorn with
            WEB_CONCURRENCY worker processes (default 2) as the Procfile runs it, or
            --server daphne / --workers N
  fresh     import then rate at once: `pairs` comparisons imported through the import service
            (comparisons_import, as the ops page and the command do) into tables whose
            autovacuum is off, and no VACUUM ANALYZE before 16 threads rate them as in
            `service` (what a server relying on a late autovacuum sees right after an import).
            Run it alone (`--phases fresh`) to measure tables that never had statistics
  open      open loop through HTTP at a fixed rate (default 50 cycles/s): a cycle starts every
            1/rate s whether or not earlier ones finished; `next` is timed from the cycle's
            scheduled start (so a stalled client or server cannot hide latency: no coordinated
            omission), `submit` from the moment `next` returned.
The load generator for HTTP phases is a separate process (this file with --client) so it does
not share a GIL with the server; its CPU use is reported. Everything runs in one database,
`bench_assignment` by default, which is dropped and created by this script.

The last line printed is the one-line summary the issue asks for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import lean_http  # noqa: E402
from bench.common import (  # noqa: E402
    REPO_ROOT,
    SERVERS,
    AsgiServer,
    add_database_args,
    bench_database,
    bench_env,
    cpu_seconds,
    filler_response,
    fmt,
    peak_rss_mb,
    percentile,
    postgres_cpu_since,
    postgres_cpu_snapshot,
    print_table,
)

TARGET_OPEN_P99_MS = 25.0
TARGET_RATIO_TO_FLOOR = 0.5
TARGET_CLOSED16 = 200.0


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    phase: str
    concurrency: str
    cycles: int = 0
    elapsed_s: float = 0.0
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_sample: str = ""
    exhausted: bool = False
    app_cpu_s: float | None = None  # server process (http) or this process (service, floor)
    db_cpu_s: float | None = None  # the PostgreSQL backends serving the benchmark database
    client_cpu_s: float | None = None  # the HTTP load generator
    max_start_lag_ms: float | None = None  # open loop: how late the client started a cycle
    profiled: str = ""  # the file of py-spy's samples of the server during this run (--profile)

    def cycle(self, started: float, leased: float, done: float) -> None:
        """One lease + vote, timed with perf_counter: started, lease in hand, vote stored."""
        self.next_ms.append((leased - started) * 1000)
        self.submit_ms.append((done - leased) * 1000)
        self.cycles += 1

    def add(self, other: PhaseResult) -> None:
        """Count in what one thread of the phase measured."""
        self.cycles += other.cycles
        self.next_ms += other.next_ms
        self.submit_ms += other.submit_ms
        self.errors += other.errors
        self.exhausted |= other.exhausted

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.elapsed_s if self.elapsed_s else math.nan

    def row(self) -> list[str]:
        def per_cycle(cpu: float | None) -> str:
            return "-" if cpu is None or not self.cycles else f"{1000 * cpu / self.cycles:.1f}"

        return [
            self.phase,
            self.concurrency,
            str(self.cycles),
            fmt(self.cycles_per_s),
            fmt(percentile(self.next_ms, 50), 2),
            fmt(percentile(self.next_ms, 99), 2),
            fmt(percentile(self.submit_ms, 50), 2),
            fmt(percentile(self.submit_ms, 99), 2),
            str(self.errors) + ("*" if self.exhausted else ""),
            per_cycle(self.app_cpu_s),
            per_cycle(self.db_cpu_s),
            per_cycle(self.client_cpu_s),
        ]


HEADERS = [
    "phase",
    "conc",
    "cycles",
    "cycles/s",
    "next p50",
    "next p99",
    "submit p50",
    "submit p99",
    "errors",
    "app cpu",
    "db cpu",
    "client cpu",
]


# --------------------------------------------------------------------------------------------
# HTTP load generator (runs in its own process; never imports Django)
# --------------------------------------------------------------------------------------------


def _vote_body() -> dict:
    return {
        "choice": random.choice("ab"),
        "strength": 2,
        "idempotency_key": uuid.uuid4().hex,
        "client_ms": random.randint(2_000, 40_000),
    }


class _Stats:
    def __init__(self) -> None:
        self.next_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.cycles = 0
        self.errors = 0
        self.error_sample = ""
        self.exhausted = False

    def error(self, what: str, response) -> None:
        self.errors += 1
        if not self.error_sample:
            self.error_sample = f"{what}: HTTP {response.status_code} {response.text[:300]}"

    def result(self, elapsed: float, cpu0: float, **extra) -> dict:
        """What the client sends back: these counts, the timed seconds and its CPU since cpu0."""
        return {
            "cycles": self.cycles,
            "elapsed_s": elapsed,
            "next_ms": self.next_ms,
            "submit_ms": self.submit_ms,
            "errors": self.errors,
            "error_sample": self.error_sample,
            "exhausted": self.exhausted,
            "client_cpu_s": cpu_seconds() - cpu0,
            **extra,
        }


async def _post(client, stats: _Stats, what: str, url: str, **kw):
    """A POST; None (counted as an error) when it does not get an answer."""
    import httpx

    try:
        return await client.post(url, **kw)
    except (httpx.HTTPError, lean_http.HTTPError) as exc:
        stats.errors += 1
        stats.error_sample = stats.error_sample or f"{what}: {exc!r}"
        return None


async def _cycle(
    client, stats: _Stats, project_id: int, token: str, started: float, held: dict | None = None
) -> bool:
    """One rating cycle for one rater. `started` is when its first request should have been sent.

    Two calls (`held` None): next, then submit. One request (`held`: token -> the lease the
    rater holds): submit with ?next=true, which returns the next lease; only a rater who holds
    none yet (the first cycle) calls next first. Returns False when the queue has nothing more
    for this rater (or a call failed).
    """
    headers = {"Authorization": f"Token {token}"}
    lease = held.get(token) if held is not None else None
    leased = started
    if lease is None:
        response = await _post(client, stats, "next", f"/api/projects/{project_id}/next/", headers=headers)
        if response is None:
            return False
        leased = time.perf_counter()
        if response.status_code == 204:
            stats.exhausted = True
            return False
        if response.status_code != 200:
            stats.error("next", response)
            return False
        lease = response.json()
        stats.next_ms.append((leased - started) * 1000)
    url = f"/api/comparisons/{lease['comparison_id']}/preference/"
    if held is not None:
        url += "?next=true"
    response = await _post(client, stats, "submit", url, json=_vote_body(), headers=headers)
    if response is None:
        return False
    done = time.perf_counter()
    if response.status_code != 201:
        stats.error("submit", response)
        return False
    stats.submit_ms.append((done - leased) * 1000)
    stats.cycles += 1
    if held is not None:
        held[token] = response.json()["next"]
        if held[token] is None:
            stats.exhausted = True
            return False
    return True


def _client(cfg: dict, connections: int):
    """The load generator's HTTP client: `connections` keep-alive connections to the server;
    bench/lean_http.py unless `--http-client httpx` (the client before; it costs the shared
    CPUs more per cycle)."""
    if cfg.get("http_client", "lean") == "lean":
        return lean_http.LeanClient(cfg["base_url"], connections)
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=cfg["base_url"], limits=limits, timeout=30.0)


async def _warm_up(client, cfg: dict, tokens: list[str], held: dict | None) -> _Stats:
    """One untimed cycle per rater: opens the keep-alive connections and warms the server (and,
    for the one-request cycle, leaves every rater holding a lease, as in the steady state)."""
    warm = _Stats()
    await asyncio.gather(
        *(_cycle(client, warm, cfg["project_id"], t, time.perf_counter(), held) for t in tokens)
    )
    return warm


async def _closed_loop(cfg: dict) -> dict:
    tokens = cfg["tokens"][: cfg["concurrency"]]
    stats = _Stats()
    held = {} if cfg["one_request"] else None
    async with _client(cfg, len(tokens)) as client:
        warm = await _warm_up(client, cfg, tokens, held)
        if warm.errors:
            return {"error": warm.error_sample}
        t0 = time.perf_counter()
        end = t0 + cfg["seconds"]
        cpu0 = cpu_seconds()

        async def rater(token: str) -> None:
            while time.perf_counter() < end:
                if not await _cycle(client, stats, cfg["project_id"], token, time.perf_counter(), held):
                    return

        await asyncio.gather(*(rater(t) for t in tokens))
        elapsed = time.perf_counter() - t0
    return stats.result(elapsed, cpu0)


async def _open_loop(cfg: dict) -> dict:
    tokens: deque[str] = deque(cfg["tokens"])
    free = asyncio.Condition()
    stats = _Stats()
    lags: list[float] = []
    held = {} if cfg["one_request"] else None
    async with _client(cfg, len(tokens)) as client:
        # Every rater warms up in the one-request cycle: they all hold a lease from then on.
        warm = await _warm_up(client, cfg, list(tokens) if held is not None else list(tokens)[:8], held)
        if warm.errors:
            return {"error": warm.error_sample}

        async def one(scheduled: float) -> None:
            # A person is free to start a new pair only once their previous one is in; with
            # enough people this never waits, and if it does the wait counts as latency.
            async with free:
                await free.wait_for(lambda: bool(tokens))
                token = tokens.popleft()
            lags.append((time.perf_counter() - scheduled) * 1000)
            try:
                await _cycle(client, stats, cfg["project_id"], token, scheduled, held)
            finally:
                async with free:
                    tokens.append(token)
                    free.notify()

        n = int(cfg["rate"] * cfg["seconds"])
        interval = 1.0 / cfg["rate"]
        cpu0 = cpu_seconds()
        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            scheduled = t0 + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return stats.result(elapsed, cpu0, max_start_lag_ms=max(lags) if lags else None)


def client_main() -> None:
    cfg = json.load(sys.stdin)
    runner = _open_loop if cfg["mode"] == "open" else _closed_loop
    import uvloop  # as the server runs (uvicorn[standard])

    json.dump(uvloop.run(runner(cfg)), sys.stdout)


def run_client(cfg: dict, *, server: AsgiServer, db_name: str) -> dict:
    """Run the load generator in its own process and measure the server's CPU meanwhile."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--client"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        text=True,
    )
    server_cpu0 = server.cpu_seconds()
    db_cpu0 = postgres_cpu_snapshot(db_name)
    out, _ = proc.communicate(json.dumps(cfg), timeout=cfg["seconds"] + 300)
    server_cpu = server.cpu_seconds() - server_cpu0
    db_cpu = postgres_cpu_since(db_name, db_cpu0)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    result = json.loads(out)
    # Both include the untimed warm-up cycles (one per rater at most).
    result["server_cpu_s"] = server_cpu
    result["db_cpu_s"] = db_cpu
    return result


# --------------------------------------------------------------------------------------------
# Set-up: database, seed data (Django, in this process)
# --------------------------------------------------------------------------------------------


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def bench_members_add(project) -> None:
    """The bench raters are members of the project (raters rate only their projects)."""
    from django.contrib.auth.models import User

    from annotation.services.members import project_members_add_all

    project_members_add_all(project=project, users=User.objects.filter(username__startswith="bench-rater-"))


def project_seed(*, name: str, pairs: int, overlap: int, prompts: int = 250, batch: int = 5_000):
    """A fresh project with `pairs` comparisons of `overlap` slots each, made by the service."""
    from annotation.models import Project
    from annotation.services.comparisons import ComparisonSpec, comparisons_create

    project = Project.objects.create(name=name, slug=name, overlap=overlap, lease_seconds=300)
    bench_members_add(project)
    for start in range(0, pairs, batch):
        specs = [
            ComparisonSpec(
                messages=[
                    {
                        "role": "user",
                        "content": f"Question {i % prompts}: how would you do task {i % prompts}?",
                    }
                ],
                response_a=filler_response(f"A{i}", 3),
                response_b=filler_response(f"B{i}", 2),
            )
            for i in range(start, min(start + batch, pairs))
        ]
        comparisons_create(project=project, specs=specs)
    return project


def raters_create(n: int) -> list:
    """n rater accounts, each with an API token (its secret in `user.api_token`). Unusable
    passwords: no PBKDF2 anywhere in the run."""
    from django.contrib.auth.models import Group, User

    from accounts.tokens import token_issue

    group = Group.objects.get(name="rater")
    users = User.objects.bulk_create(
        [User(username=f"bench-rater-{i}", password="!unusable") for i in range(n)]  # noqa: S106
    )
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=u.pk, group_id=group.pk) for u in users]
    )
    raw = {user.pk: token_issue(user=user).raw for user in users}
    raters = list(User.objects.filter(pk__in=[u.pk for u in users]).order_by("pk"))
    for rater in raters:
        rater.api_token = raw[rater.pk]
    return raters


# --------------------------------------------------------------------------------------------
# Service layer and bare-SQL floor (threads in this process, one connection each)
# --------------------------------------------------------------------------------------------


def _phase_clock(clock: dict, seconds: float, db_name: str):
    """(start, stop) barrier actions of a threaded phase, writing into `clock`: start runs once
    every thread has its connection open, stop once every thread has left its loop."""

    def start() -> None:
        clock["cpu0"] = cpu_seconds()
        clock["db_cpu0"] = postgres_cpu_snapshot(db_name)
        clock["start"] = time.perf_counter()
        clock["stop_at"] = clock["start"] + seconds

    def stop() -> None:
        clock["elapsed"] = time.perf_counter() - clock["start"]
        clock["cpu"] = cpu_seconds() - clock["cpu0"]
        clock["db_cpu"] = postgres_cpu_since(db_name, clock["db_cpu0"])

    return start, stop


def _phase_close(result: PhaseResult, clock: dict, failures: list[BaseException]) -> PhaseResult:
    """The clock's timings and the threads' failures into `result`."""
    if "elapsed" in clock:
        result.elapsed_s = clock["elapsed"]
        result.app_cpu_s = clock["cpu"]
        result.db_cpu_s = clock["db_cpu"]
    if failures:
        result.errors += len(failures)
        result.error_sample = repr(failures[0])
    return result


def _run_threads(phase: str, concurrency: int, seconds: float, work, db_name: str) -> PhaseResult:
    """Run `work(index, ready, finish, clock, result)` in `concurrency` threads started together.

    Each thread opens its connection, waits on `ready`, loops until `clock["stop_at"]` and calls
    `finish()` before it closes its connection (so the backends' CPU can still be read).
    """
    result = PhaseResult(phase=phase, concurrency=str(concurrency))
    lock = threading.Lock()
    clock: dict = {}
    start, stop = _phase_clock(clock, seconds, db_name)
    ready = threading.Barrier(concurrency + 1, action=start)
    done = threading.Barrier(concurrency, action=stop)

    def finish() -> None:
        try:
            done.wait()
        except threading.BrokenBarrierError:
            pass

    failures: list[BaseException] = []

    def runner(index: int) -> None:
        local = PhaseResult(phase=phase, concurrency="")
        try:
            work(index, ready, finish, clock, local)
        except BaseException as exc:  # reported after the phase; the other threads go on
            failures.append(exc)
            if not clock:
                ready.abort()
            done.abort()
        with lock:
            result.add(local)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    try:
        ready.wait()  # every thread has its connection open
    except threading.BrokenBarrierError:
        pass  # a thread failed to start; its error is reported below
    for t in threads:
        t.join()
    return _phase_close(result, clock, failures)


def run_service(*, project, raters: list, concurrency: int, seconds: float, db_name: str) -> PhaseResult:
    from django.db import connection

    from annotation.services.queue import assignment_next, preference_submit

    def work(index: int, ready: threading.Barrier, finish, clock: dict, out: PhaseResult) -> None:
        rater = raters[index]
        try:
            connection.ensure_connection()
            ready.wait()
            stop_at = clock["stop_at"]
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                lease = assignment_next(rater=rater, project=project)
                t1 = time.perf_counter()
                if lease is None:
                    out.exhausted = True
                    return
                body = _vote_body()
                preference_submit(
                    rater=rater,
                    comparison_id=lease.comparison.pk,
                    choice=body["choice"],
                    strength=body["strength"],
                    idempotency_key=body["idempotency_key"],
                    client_ms=body["client_ms"],
                )
                out.cycle(t0, t1, time.perf_counter())
        finally:
            finish()
            connection.close()

    return _run_threads("service", concurrency, seconds, work, db_name)


# The floor: the least SQL that does the same job (hand a rater one open slot that they have not
# touched, with the texts to show; record the vote, close the slot, count it). No rater lock,
# no idempotency look-ups, no ORM, prepared statements after a few runs (psycopg's default).
FLOOR_PICK = """
SELECT a.id FROM annotation_assignment a
WHERE a.project_id = %(project)s AND a.state <> 'done'
  AND (a.state = 'open' OR (a.state = 'leased' AND a.expires_at <= now()))
  AND NOT EXISTS (SELECT 1 FROM annotation_assignment t
                  WHERE t.comparison_id = a.comparison_id AND t.rater_id = %(rater)s)
  AND NOT EXISTS (SELECT 1 FROM annotation_skip s
                  WHERE s.comparison_id = a.comparison_id AND s.rater_id = %(rater)s)
ORDER BY a.priority DESC, a.comparison_id, a.slot
LIMIT 1 FOR UPDATE OF a SKIP LOCKED
"""
FLOOR_LEASE = """
UPDATE annotation_assignment a
SET state = 'leased', rater_id = %(rater)s, leased_at = now(),
    expires_at = now() + interval '300 seconds', "left" = %(left)s, lease_count = a.lease_count + 1
FROM annotation_comparison c
JOIN annotation_prompt p ON p.id = c.prompt_id
JOIN annotation_response ra ON ra.id = c.response_a_id
JOIN annotation_response rb ON rb.id = c.response_b_id
WHERE a.id = %(id)s AND c.id = a.comparison_id
RETURNING a.comparison_id, p.messages, ra.text, rb.text
"""
FLOOR_VOTE = """
INSERT INTO annotation_preference (rater_id, comparison_id, choice, strength, rationale,
    unsafe_a, unsafe_a_category, unsafe_b, unsafe_b_category, shown_left, client_ms, lease_ms,
    idempotency_key, source, created_at, updated_at)
VALUES (%(rater)s, %(comparison)s, %(choice)s, %(strength)s, '', false, '', false, '',
    %(left)s, %(client_ms)s, 0, %(key)s, 'rater', now(), now())
"""
FLOOR_CLOSE = "UPDATE annotation_assignment SET state = 'done' WHERE id = %(id)s"
FLOOR_COUNT = "UPDATE annotation_comparison SET votes_count = votes_count + 1 WHERE id = %(comparison)s"


def run_floor(
    *,
    database_url: str,
    db_name: str,
    project_id: int,
    rater_ids: list[int],
    concurrency: int,
    seconds: float,
):
    import psycopg

    def work(index: int, ready: threading.Barrier, finish, clock: dict, out: PhaseResult) -> None:
        rater = rater_ids[index]
        with psycopg.connect(database_url) as conn:
            try:
                ready.wait()
                stop_at = clock["stop_at"]
                while time.perf_counter() < stop_at:
                    t0 = time.perf_counter()
                    left = random.choice("ab")
                    with conn.transaction():
                        row = conn.execute(FLOOR_PICK, {"project": project_id, "rater": rater}).fetchone()
                        if row is not None:
                            comparison_id, _messages, _a, _b = conn.execute(
                                FLOOR_LEASE, {"rater": rater, "left": left, "id": row[0]}
                            ).fetchone()
                    t1 = time.perf_counter()
                    if row is None:
                        out.exhausted = True
                        return
                    body = _vote_body()
                    with conn.transaction():
                        conn.execute(
                            FLOOR_VOTE,
                            {
                                "rater": rater,
                                "comparison": comparison_id,
                                "choice": body["choice"],
                                "strength": body["strength"],
                                "left": left,
                                "client_ms": body["client_ms"],
                                "key": body["idempotency_key"],
                            },
                        )
                        conn.execute(FLOOR_CLOSE, {"id": row[0]})
                        conn.execute(FLOOR_COUNT, {"comparison": comparison_id})
                    out.cycle(t0, t1, time.perf_counter())
            finally:
                finish()

    return _run_threads("floor (SQL)", concurrency, seconds, work, db_name)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


ALL_PHASES = ("floor", "service", "fresh", "http", "http1", "open", "open1")
DEFAULT_PHASES = ("floor", "service", "http", "http1", "open", "open1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 pairs, 3 s phases")
    parser.add_argument("--pairs", type=int, help="comparisons per phase project (default 10,000)")
    parser.add_argument("--overlap", type=int, default=3, help="k, votes per comparison (default 3)")
    parser.add_argument("--seconds", type=float, help="length of each phase run (default 10)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each phase (default 3): median, spread"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy during the first run of the last open-loop phase and print "
        "where its CPU goes (var/bench-assignment-profile.txt holds the raw stacks)",
    )
    parser.add_argument("--raters", type=int, default=64, help="rater accounts (default 64)")
    parser.add_argument("--rate", type=float, default=50.0, help="open-loop cycles per second (default 50)")
    parser.add_argument(
        "--concurrency", default="1,4,16", help="closed-loop concurrency levels (default 1,4,16)"
    )
    parser.add_argument(
        "--phases",
        default=",".join(DEFAULT_PHASES),
        help=f"comma-separated subset of {','.join(ALL_PHASES)} (default: {','.join(DEFAULT_PHASES)}); "
        "http1 / open1 are http / open with the one-request cycle (submit ?next=true)",
    )
    add_database_args(
        parser,
        db_name="bench_assignment",
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3"),
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="uvicorn",
        help="ASGI server for the HTTP phases (default uvicorn)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY") or 2),
        help="server worker processes (default $WEB_CONCURRENCY or 2, as the Procfile)",
    )
    parser.add_argument(
        "--compare-asgi",
        action="store_true",
        help="run the HTTP phases twice: first against a server with HOT_PATH_ASGI=0 (Django's own ASGI "
        "handler for every request; phases marked 'stock'), then as configured",
    )
    parser.add_argument(
        "--http-client",
        choices=("lean", "httpx"),
        default="lean",
        help="the load generator's HTTP client: bench/lean_http.py (default) or httpx (the one before)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.pairs = args.pairs or (3_000 if args.quick else 10_000)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    args.phase_set = {p.strip() for p in args.phases.split(",")}
    unknown = args.phase_set - set(ALL_PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if max(args.levels) > args.raters:
        parser.error("need at least as many raters as the highest concurrency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        client_main()
        return 0

    print(
        f"bench assignment: {args.pairs} pairs per phase, k={args.overlap}, {args.seconds:g} s phases, "
        f"{args.repeats} runs each, {os.cpu_count()} CPUs, database {args.db_name}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    t_setup = time.perf_counter()
    with bench_database(args.database_url, args.db_name, keep=args.keep_db) as bench_url:
        env = bench_env(bench_url, args.redis_url, "bench-assignment")
        try:
            django_setup(env)
            return run_phases(args, env, bench_url, t_setup)
        finally:
            from django.db import connections

            connections.close_all()


def phase_plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(kind, concurrency) of every phase asked for, in the order they run."""
    plan: list[tuple[str, int]] = []
    if "floor" in args.phase_set:
        plan.append(("floor", 16))
    if "service" in args.phase_set:
        plan += [("service", c) for c in args.levels]
    if "fresh" in args.phase_set:
        plan.append(("fresh", 16))
    for kind in ("http", "http1"):
        if kind in args.phase_set:
            plan += [(kind, c) for c in args.levels]
    for kind in ("open", "open1"):
        if kind in args.phase_set:
            plan.append((kind, 0))
    return plan


def settle() -> None:
    """VACUUM (ANALYZE) the benchmark database: the steady state a running queue is in.

    Fresh tables have no statistics until autovacuum gets round to them (up to a minute);
    without them the planner sorts every open slot of the project on each `next`. A
    deployment runs for longer than that, so measure the steady state: vacuumed and analysed
    before every phase, as autovacuum keeps a long-running queue. Else the autovacuum of the
    freshly loaded tables, or an autoanalyze, lands inside some phase (seen: 20-30 ms of
    PostgreSQL CPU per cycle in the first phases), and the statistics taken at seeding (no
    slot has a rater yet) sent one queue look-up by rater through a whole index.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")


def report(results: list[PhaseResult], result: PhaseResult) -> None:
    """Keep a phase's result and print its line."""
    results.append(result)
    line = (
        f"  {result.phase:<12} conc={result.concurrency:<6} {result.cycles_per_s:8.1f} cycles/s  "
        f"next p99 {fmt(percentile(result.next_ms, 99), 2)} ms  "
        f"submit p99 {fmt(percentile(result.submit_ms, 99), 2)} ms"
    )
    if result.error_sample:
        line += f"  first error: {result.error_sample}"
    print(line, flush=True)


def run_phases(args: argparse.Namespace, env: dict[str, str], bench_url: str, t_setup: float) -> int:
    raters = raters_create(args.raters)
    tokens = [r.api_token for r in raters]
    plan = phase_plan(args)
    projects = {
        (kind, c): project_seed(name=f"bench-{kind}-{c}", pairs=args.pairs, overlap=args.overlap)
        for kind, c in plan
        if kind != "fresh"  # imported inside its phase
    }
    settle()
    print(
        f"set-up (migrate + seed {len(projects)} projects): {time.perf_counter() - t_setup:.1f} s", flush=True
    )

    results: list[PhaseResult] = []
    for kind, c in plan:
        for _ in range(args.repeats):
            if kind in ("floor", "service"):
                settle()
                report(results, run_local_phase(kind, c, projects[(kind, c)], raters, args, bench_url))
            elif kind == "fresh":  # each run imports its own pairs
                report(results, run_fresh(args=args, raters=raters, concurrency=c))
    server = None
    http_plan = [(k, c) for k, c in plan if k in HTTP_KINDS]
    if http_plan and args.compare_asgi:
        stock: list[PhaseResult] = []
        run_http_phases(
            http_plan, projects, tokens, args, {**env, "HOT_PATH_ASGI": "0"}, stock, profile="-stock"
        )
        for r in stock:
            r.phase += " stock"
        results += stock
    if http_plan:
        server = run_http_phases(http_plan, projects, tokens, args, env, results)
    return summary(results, server)


FRESH_TABLES = ("annotation_assignment", "annotation_comparison", "annotation_response", "annotation_prompt")


def run_fresh(*, args: argparse.Namespace, raters: list, concurrency: int) -> PhaseResult:
    """Import then rate at once: the import service writes `pairs` comparisons into tables whose
    autovacuum is off (late or off in a deployment), and the raters start right away."""
    from django.db import connection

    from annotation.models import Project
    from annotation.services.imports import comparisons_import

    with connection.cursor() as cur:
        for table in FRESH_TABLES:
            cur.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    try:
        n = Project.objects.filter(slug__startswith="bench-fresh").count()
        project = Project.objects.create(
            name=f"bench-fresh-{n}", slug=f"bench-fresh-{n}", overlap=args.overlap, lease_seconds=300
        )
        bench_members_add(project)
        lines = (
            json.dumps(
                {
                    "prompt": f"Fresh question {i % 250}: how would you do task {i % 250}?",
                    "response_a": filler_response(f"A{i}", 3),
                    "response_b": filler_response(f"B{i}", 2),
                }
            )
            for i in range(args.pairs)
        )
        started = time.perf_counter()
        imported = comparisons_import(project=project, lines=lines).imported
        print(
            f"  fresh: imported {imported} pairs in {time.perf_counter() - started:.1f} s; rating at once",
            flush=True,
        )
        result = run_service(
            project=project,
            raters=raters,
            concurrency=concurrency,
            seconds=args.seconds,
            db_name=args.db_name,
        )
    finally:
        with connection.cursor() as cur:
            for table in FRESH_TABLES:
                cur.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
    result.phase = "fresh import"
    return result


def run_local_phase(kind: str, c: int, project, raters: list, args, bench_url: str) -> PhaseResult:
    """The floor or the service phase at concurrency c, in this process."""
    if kind == "floor":
        return run_floor(
            database_url=bench_url,
            db_name=args.db_name,
            project_id=project.pk,
            rater_ids=[r.pk for r in raters],
            concurrency=c,
            seconds=args.seconds,
        )
    return run_service(
        project=project, raters=raters, concurrency=c, seconds=args.seconds, db_name=args.db_name
    )


def run_http_phases(
    http_plan: list[tuple[str, int]],
    projects: dict,
    tokens: list[str],
    args,
    env: dict,
    results: list,
    *,
    profile: str = "",
) -> tuple[float, str]:
    """The HTTP phases against one server; returns (its RSS in MiB at the end, its description)."""
    log_path = REPO_ROOT / "var" / "bench-assignment-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with AsgiServer(env=env, log_path=log_path, server=args.server, workers=args.workers) as server:
        print(f"HTTP phases: {server.description}", flush=True)
        # Django imports the URL conf (and every API module) on the first request: keep
        # that out of the first phase's numbers.
        import httpx

        httpx.get(
            f"{server.base_url}/api/projects/", headers={"Authorization": f"Token {tokens[0]}"}, timeout=120
        )
        profile_at = next((k for k, _ in reversed(http_plan) if k.startswith("open")), None)
        for kind, c in http_plan:
            for repeat in range(args.repeats):
                settle()
                cfg = {
                    "base_url": server.base_url,
                    "project_id": projects[(kind, c)].pk,
                    "tokens": tokens,
                    "seconds": args.seconds,
                    "mode": "open" if kind.startswith("open") else "closed",
                    "one_request": kind.endswith("1"),
                    "concurrency": c,
                    "rate": args.rate,
                    "http_client": args.http_client,
                }
                profiling = args.profile and kind == profile_at and repeat == 0
                path = PROFILE_PATH.with_name(f"{PROFILE_PATH.stem}{profile}.txt")
                with profile_server(server, args.seconds, path=path, enabled=profiling):
                    raw = run_client(cfg, server=server, db_name=args.db_name)
                if "error" in raw:
                    print(f"  {kind}: the API answered with an error, HTTP phases skipped: {raw['error']}")
                    print(f"  (server log: {log_path})")
                    return server.rss_mb(), server.description
                report(results, http_result(kind, c, raw, args.rate))
                results[-1].profiled = str(path) if profiling else ""
        return server.rss_mb(), server.description


HTTP_KINDS = {
    "http": "http closed",
    "http1": "http closed 1req",
    "open": "http open",
    "open1": "http open 1req",
}


def http_result(kind: str, c: int, raw: dict, rate: float) -> PhaseResult:
    """A PhaseResult from what the load generator and run_client measured."""
    return PhaseResult(
        phase=HTTP_KINDS[kind],
        concurrency=f"{rate:g}/s" if kind.startswith("open") else str(c),
        cycles=raw["cycles"],
        elapsed_s=raw["elapsed_s"],
        next_ms=raw["next_ms"],
        submit_ms=raw["submit_ms"],
        errors=raw["errors"],
        error_sample=raw["error_sample"],
        exhausted=raw["exhausted"],
        app_cpu_s=raw["server_cpu_s"],
        db_cpu_s=raw["db_cpu_s"],
        client_cpu_s=raw["client_cpu_s"],
        max_start_lag_ms=raw.get("max_start_lag_ms"),
    )


# --------------------------------------------------------------------------------------------
# Where the server's CPU goes (--profile): py-spy samples of the server's workers, bucketed
# --------------------------------------------------------------------------------------------

PROFILE_PATH = REPO_ROOT / "var" / "bench-assignment-profile.txt"
# A sample goes to the bucket of its innermost frame that matches one (leaf first): a psycopg
# call made by our service counts as psycopg, DRF's JSON renderer's json.dumps as encoding.
# py-spy names files by their path under site-packages / the stdlib / the repository.
PROFILE_BUCKETS = [
    ("psycopg (client side), pool", ("psycopg/", "psycopg_binary/", "psycopg_pool/")),
    ("JSON encode / decode", ("json/", "msgspec/", "orjson/")),
    ("Django middleware", ("django/middleware/", "django/contrib/sessions/", "django/contrib/messages/",
                           "django/contrib/auth/middleware", "django_htmx/", "whitenoise/", "config/middleware")),
    ("DRF (request, auth, permissions, response)", ("rest_framework/",)),
    ("our code (views, services, serializers, core/)", ("annotation/", "core/", "config/", "training/")),
    ("Django ORM / db layer", ("django/db/",)),
    ("asgiref + thread pool (sync/async hand-offs)", ("asgiref/", "concurrent/futures/", "threading.py", "queue.py")),
    ("Django ASGI handler, URLs, signals, request", ("django/",)),
    ("uvicorn, httptools, event loop", ("uvicorn/", "uvloop/", "httptools/", "asyncio/", "h11/", "selectors.py")),
]  # fmt: skip


def _frame_bucket(frame: str) -> str | None:
    path = frame[frame.rfind("(") + 1 :] if frame.endswith(")") else ""
    for name, prefixes in PROFILE_BUCKETS:
        if path.startswith(prefixes):
            return name
    return None


def profile_split(raw_path: Path) -> dict[str, int]:
    """Samples per bucket from py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    counts: dict[str, int] = {}
    for line in raw_path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        bucket = next((b for f in reversed(stack.split(";")) if (b := _frame_bucket(f))), "other Python")
        counts[bucket] = counts.get(bucket, 0) + int(n)
    return counts


class profile_server:  # noqa: N801 - a context manager used like a function
    """py-spy records the server's processes (the workers are its subprocesses) for `seconds`."""

    def __init__(self, server: AsgiServer, seconds: float, *, path: Path, enabled: bool) -> None:
        self.server, self.seconds, self.path, self.enabled, self.proc = server, seconds, path, enabled, None

    def __enter__(self):
        spy = Path(sys.executable).parent / "py-spy"
        if self.enabled and not spy.exists():
            print("  --profile: py-spy is not installed (requirements.txt, dev); not profiled")
        elif self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            self.proc = subprocess.Popen(
                [str(spy), "record", "--pid", str(self.server.proc.pid), "--subprocesses", "--nonblocking", "--gil",
                 "--format", "raw", "--rate", "500", "--duration", str(max(1, int(self.seconds))),
                 "--output", str(self.path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=120)


def print_profile(results: list[PhaseResult]) -> None:
    """Each profile's split of the server's CPU, in % and in ms per cycle of the profiled run."""
    for profiled in (r for r in results if r.profiled and Path(r.profiled).exists()):
        counts = profile_split(Path(profiled.profiled))
        total = sum(counts.values()) or 1
        per_cycle = 1000 * profiled.app_cpu_s / profiled.cycles if profiled.cycles else math.nan
        rows = [
            [name, f"{100 * n / total:.1f}", fmt(per_cycle * n / total, 2)]
            for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
        ]
        if profiled.db_cpu_s is not None and profiled.cycles:
            db = fmt(1000 * profiled.db_cpu_s / profiled.cycles, 2)
            rows.append(["PostgreSQL backends (from /proc, not sampled)", "-", db])
        print(f"\nserver CPU by where it was spent: py-spy --gil, {total} samples of {profiled.phase} "
              f"(first run; the ms split that run's server CPU per cycle)")  # fmt: skip
        print_table(["bucket", "% of server samples", "server CPU ms / cycle"], rows)


# --------------------------------------------------------------------------------------------
# Summary: medians of the runs of each phase
# --------------------------------------------------------------------------------------------


def _verdict(met: bool, value: float) -> str:
    return "met" if met else "MISSED" if not math.isnan(value) else "not run"


def _nanmax(*values: float) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return max(kept) if kept else math.nan


def _median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _spread(values: list[float], digits: int = 1) -> str:
    kept = [v for v in values if not math.isnan(v)]
    return f"{min(kept):.{digits}f}-{max(kept):.{digits}f}" if kept else "-"


def _p99(r: PhaseResult) -> float:
    """The worse p99 of the run's calls."""
    return _nanmax(percentile(r.next_ms, 99), percentile(r.submit_ms, 99))


def grouped(results: list[PhaseResult]) -> dict[tuple[str, str], list[PhaseResult]]:
    groups: dict[tuple[str, str], list[PhaseResult]] = {}
    for r in results:
        groups.setdefault((r.phase, r.concurrency), []).append(r)
    return groups


MEDIAN_HEADERS = [
    "phase",
    "conc",
    "runs",
    "cycles/s",
    "(min-max)",
    "p99 ms",
    "(min-max)",
    "app cpu",
    "db cpu",
]


def median_rows(groups: dict[tuple[str, str], list[PhaseResult]]) -> list[list[str]]:
    def cpu(runs: list[PhaseResult], attr: str) -> str:
        values = [
            1000 * getattr(r, attr) / r.cycles for r in runs if getattr(r, attr) is not None and r.cycles
        ]
        return fmt(_median(values))

    rows = []
    for (phase, conc), runs in groups.items():
        rates, p99s = [r.cycles_per_s for r in runs], [_p99(r) for r in runs]
        rows.append([phase, conc, str(len(runs)), fmt(_median(rates)), _spread(rates), fmt(_median(p99s), 2),
                     _spread(p99s, 2), cpu(runs, "app_cpu_s"), cpu(runs, "db_cpu_s")])  # fmt: skip
    return rows


def summary(results: list[PhaseResult], server: tuple[float, str] | None) -> int:
    """Print the tables, the targets and the one-line summary; 1 when a phase failed."""
    server_rss, server_desc = server or (None, "")
    print()
    print("every run:")
    print_table(HEADERS, [r.row() for r in results])
    print(
        "latencies in ms; open loop: next timed from the cycle's scheduled start, submit from when "
        "next returned (one-request cycle: the one request, from the scheduled start; next only where a "
        "rater held no lease yet); errors* = some rater ran out of pairs; app cpu = the server's processes "
        "(http) or this process (service, floor), db cpu = the PostgreSQL backends, client cpu = the HTTP "
        "load generator, all in CPU ms per cycle"
    )
    for r in results:
        if r.max_start_lag_ms is not None:
            print(f"{r.phase}: the client started cycles at most {r.max_start_lag_ms:.1f} ms late")
    groups = grouped(results)
    print("\nmedian of the runs of each phase (p99 = the worse of the run's calls' p99):")
    print_table(MEDIAN_HEADERS, median_rows(groups))
    print_profile(results)
    print(
        f"peak RSS: benchmark process {peak_rss_mb():.0f} MiB"
        + (f", {server_desc} {server_rss:.0f} MiB at the end" if server_rss else "")
    )

    def rate(phase: str, conc: str) -> float:
        return _median([r.cycles_per_s for r in groups.get((phase, conc), [])])

    def p99(phase: str) -> float:
        return _median([_p99(r) for (p, _), runs in groups.items() if p == phase for r in runs])

    open1, open2 = p99("http open 1req"), p99("http open")
    open_p99 = open1 if not math.isnan(open1) else open2
    c16, c16_two = rate("http closed 1req", "16"), rate("http closed", "16")
    s16, f16 = rate("service", "16"), rate("floor (SQL)", "16")
    ratio = s16 / f16 if f16 else math.nan
    print(
        f"targets: open-loop HTTP p99 <= {TARGET_OPEN_P99_MS:g} ms: {_verdict(open_p99 <= TARGET_OPEN_P99_MS, open_p99)}; "
        f"closed loop at 16 raters (one request per cycle) >= {TARGET_CLOSED16:g}/s: "
        f"{_verdict(c16 >= TARGET_CLOSED16, c16)}; "
        f"service16 / floor16 >= {TARGET_RATIO_TO_FLOOR:g}: {_verdict(ratio >= TARGET_RATIO_TO_FLOOR, ratio)}"
    )
    print(f"one-request / two-call cycle at 16 raters, same run: x{c16 / c16_two:.2f}" if c16_two else "")
    failed = any(r.errors and r.error_sample for r in results)
    print(
        f"bench assignment: open_http_p99_ms={open_p99:.2f} closed16_cycles_per_s={c16:.1f} "
        f"closed16_two_call_cycles_per_s={c16_two:.1f} open_two_call_p99_ms={open2:.2f} "
        f"service16_cycles_per_s={s16:.1f} floor16_cycles_per_s={f16:.1f} ratio_to_floor={ratio:.2f} "
        f"load_avg={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
