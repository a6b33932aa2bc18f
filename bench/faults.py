"""The fault suite (issue 15): the production stack, simulated raters voting through the HTTP API
with fixed idempotency keys, faults injected one after another, then the books checked.

    .venv/bin/python bench/faults.py                      # 64 raters, 10 minutes, 5,000 fuzz cases
    .venv/bin/python bench/faults.py --raters 16 --minutes 3 --fuzz-cases 1000

See bench/README.md ("Faults") for what each fault and check means. Needs root or the
`postgres` user's PostgreSQL binaries (initdb / pg_ctl), redis-server, and root for the tmpfs
of the full-disk fault (without it that fault is skipped and said so).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fmt, print_table  # noqa: E402
from bench.faults_stack import Stack  # noqa: E402


@dataclass
class Books:
    """What the raters sent and what the server acknowledged."""

    sent: set = field(default_factory=set)  # (rater username, idempotency key)
    acked: set = field(default_factory=set)
    ack_times: list = field(default_factory=list)  # monotonic time of every ack
    refused: dict = field(default_factory=dict)  # "status code" -> count (4xx answers to a vote)
    errors: int = 0  # 5xx answers and network errors (each retried with the same key)
    lock: threading.Lock = field(default_factory=threading.Lock)


def rater_loop(base_url: str, username: str, token: str, project_id: int, books: Books, stop, think_s: float):
    rng = random.Random(username)
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=15)
    while not stop.is_set():
        try:
            lease = client.post(f"/api/projects/{project_id}/next/")
        except httpx.HTTPError:
            with books.lock:
                books.errors += 1
            time.sleep(0.5)
            continue
        if lease.status_code != 200:
            with books.lock:
                books.errors += lease.status_code >= 500
            time.sleep(1.0)
            continue
        comparison = lease.json()["comparison_id"]
        time.sleep(think_s * rng.uniform(0.5, 1.5))
        key = f"{username}-{comparison}"
        body = {"choice": rng.choice(["a", "b", "tie"]), "strength": 2, "idempotency_key": key,
                "client_ms": int(think_s * 1000)}  # fmt: skip
        with books.lock:
            books.sent.add((username, key))
        deadline = time.monotonic() + 120  # the same key until acknowledged (or refused)
        while time.monotonic() < deadline:
            try:
                answer = client.post(f"/api/comparisons/{comparison}/preference/", json=body)
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code < 500:
                with books.lock:
                    if answer.status_code in (200, 201):
                        books.acked.add((username, key))
                        books.ack_times.append(time.monotonic())
                    else:
                        try:
                            why = f"{answer.status_code} {answer.json().get('code', '')}".strip()
                        except ValueError:
                            why = str(answer.status_code)
                        books.refused[why] = books.refused.get(why, 0) + 1
                break
            with books.lock:
                books.errors += 1
            time.sleep(0.5)


# --- Django in this process (seeding and the final checks) -----------------------------------


def django_setup(stack: Stack) -> None:
    os.environ.update(stack.env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()


def seed(stack: Stack, *, raters: int, pairs: int, data_votes: int, reward_votes: int) -> dict:
    from django.contrib.auth.models import Group, User

    from accounts.tokens import token_issue
    from annotation.models import Project
    from annotation.services.comparisons import ComparisonSpec, comparisons_create
    from annotation.services.members import project_members_add_all
    from annotation.services.preference_imports import preferences_import

    def user(name: str, role: str) -> tuple[str, str]:
        u = User.objects.create_user(username=name, password=f"{name}-Bench-pw-9")
        u.groups.add(Group.objects.get(name=role))
        return name, token_issue(user=u).raw

    rating = Project.objects.create(name="Bench rating", slug="bench-rating", overlap=3, lease_seconds=120)
    comparisons_create(
        project=rating,
        specs=[
            ComparisonSpec(
                messages=[{"role": "user", "content": f"Question {i}?"}],
                response_a=f"Answer A to {i}",
                response_b=f"Answer B to {i}",
            )
            for i in range(pairs)
        ],  # fmt: skip
    )
    data = Project.objects.create(name="Bench data", slug="bench-data", overlap=1)
    lines = [
        json.dumps({"prompt": f"Q{i}?", "chosen": f"A kind answer {i}.", "rejected": f"Rude {i}!"})
        for i in range(data_votes)
    ]
    preferences_import(project=data, lines=lines, fmt="trl")
    reward = Project.objects.create(name="Bench reward", slug="bench-reward", overlap=1)
    preferences_import(project=reward, lines=lines[:reward_votes], fmt="trl")
    probe = Project.objects.create(name="Bench probe", slug="bench-probe", overlap=1)
    preferences_import(project=probe, lines=lines[:5], fmt="trl")
    seeded = {
        "rating": rating.pk, "data": data.pk, "probe": probe.pk, "reward": reward.pk,
        "raters": [user(f"bench-r{i}", "rater") for i in range(raters)],
        "ops": user("bench-ops", "ops")[1], "researcher": user("bench-researcher", "researcher")[1],
    }  # fmt: skip
    # Raters and researchers see only their projects (issue 15): the raters are members of the
    # rating project, the researcher of every project (the bad-input checks go through its
    # exports; a non-member would get 404s and test nothing). Ops see every project.
    project_members_add_all(
        project=rating, users=User.objects.filter(username__in=[name for name, _ in seeded["raters"]])
    )
    researcher = User.objects.get(username="bench-researcher")
    for p in (rating, data, reward, probe):
        project_members_add_all(project=p, users=[researcher])
    return seeded


# --- faults ---------------------------------------------------------------------------------


@dataclass
class FaultResult:
    name: str
    injected_at: float
    recovery_s: float | None = None
    note: str = ""
    votes_per_s: float = 0.0


class Faults:
    def __init__(self, stack: Stack, seeded: dict, books: Books, args):
        self.stack, self.seeded, self.books, self.args = stack, seeded, books, args
        self.ops = httpx.Client(
            base_url=stack.web.base_url, headers={"Authorization": f"Token {seeded['ops']}"}, timeout=30
        )

    def _export(self, project: int, *, kind: str = "raw", fmt_: str = "jsonl") -> int | None:
        try:
            answer = self.ops.post("/api/exports/", json={"project": project, "kind": kind, "format": fmt_})
        except httpx.HTTPError:
            return None
        return answer.json().get("id") if answer.status_code in (200, 201, 202) else None

    def _export_status(self, export_id: int) -> dict:
        try:
            answer = self.ops.get(f"/api/exports/{export_id}/")
            return answer.json() if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}

    def stack_works(self, since: float, timeout: float = 240) -> float | None:
        """Seconds from `since` until a vote is acknowledged and an export job round trip
        (web → Redis → worker → PostgreSQL → web) succeeds after it; None if not within timeout."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            self.stack.supervise()
            with self.books.lock:
                voted = any(t > since for t in self.books.ack_times[-200:])
            if voted:
                export_id = self._export(self.seeded["probe"])
                while export_id and time.monotonic() < deadline:
                    status = self._export_status(export_id).get("status")
                    if status == "succeeded":
                        return time.monotonic() - since
                    if status in ("failed", "cancelled"):
                        break
                    time.sleep(0.25)
            time.sleep(0.25)
        return None

    def pg_restart(self) -> FaultResult:
        result = FaultResult("postgres restart (fast)", time.monotonic())
        self.stack.pg_restart_fast()
        result.recovery_s = self.stack_works(result.injected_at)
        return result

    def pg_kill(self) -> FaultResult:
        result = FaultResult("postgres SIGKILL", time.monotonic())
        self.stack.pg_kill()
        self.stack.pg_start()  # crash recovery
        result.recovery_s = self.stack_works(result.injected_at)
        return result

    def redis_down(self) -> FaultResult:
        result = FaultResult(f"redis down {self.args.redis_down_s:g} s", time.monotonic())
        self.stack.redis_stop()
        time.sleep(self.args.redis_down_s)
        back = time.monotonic()
        self.stack.redis_start()
        recovery = self.stack_works(back)
        result.recovery_s = recovery
        result.note = "recovery counted from Redis back up"
        return result

    def web_kill(self) -> FaultResult:
        result = FaultResult("web worker SIGKILL", time.monotonic())
        pids = self.stack.web_worker_pids()
        os.kill(pids[0], 9)
        result.recovery_s = self.stack_works(result.injected_at)
        deadline = time.monotonic() + 60
        while len(self.stack.web_worker_pids()) < self.stack.web_workers and time.monotonic() < deadline:
            time.sleep(0.2)
        result.note = f"{len(self.stack.web_worker_pids())}/{self.stack.web_workers} web workers after"
        return result

    def _kill_worker_during(self, name: str, worker: str, start, row_of) -> FaultResult:
        """Start a job, SIGKILL the whole worker while it runs, start a new worker; recovery is
        until the job is claimed again (attempts + 1)."""
        job_id = start()
        result = FaultResult(name, time.monotonic())
        if job_id is None:
            result.note = "could not start the job"
            return result
        deadline = time.monotonic() + 300
        row = {}
        while time.monotonic() < deadline:
            row = row_of(job_id)
            if row.get("status") == "running" and row.get("done", 0) > 0:
                break
            if row.get("status") in ("succeeded", "failed", "cancelled"):
                result.note = f"finished ({row.get('status')}) before the kill"
                return result
            time.sleep(0.02)
        attempts = row.get("attempts", 1)
        result.injected_at = time.monotonic()
        self.stack.worker_kill(worker)
        self.stack.worker_start(worker)
        while time.monotonic() < result.injected_at + 300:
            now = row_of(job_id)
            if now.get("attempts", 0) > attempts or now.get("status") in ("succeeded", "failed"):
                result.recovery_s = time.monotonic() - result.injected_at
                result.note = f"job {job_id}: attempts {attempts} -> {now.get('attempts')}"
                break
            time.sleep(0.25)
        return result

    def _db_row(self, model, pk: int) -> dict:
        from django.db import close_old_connections

        close_old_connections()
        try:
            row = model.objects.filter(pk=pk).values("status", "progress_done", "attempts").first() or {}
        except Exception:
            from django.db import connections

            connections.close_all()
            return {}
        return {
            "status": row.get("status"),
            "done": row.get("progress_done", 0),
            "attempts": row.get("attempts", 0),
        }

    def worker_kill_reward(self) -> FaultResult:
        from training.models import RewardModel

        def start():
            config = {"epochs": self.args.reward_epochs, "batch_size": 8, "max_length": 48, "threads": 1}
            answer = self.ops.post(
                f"/api/training/projects/{self.seeded['reward']}/reward-models/", json={"config": config}
            )
            return answer.json().get("id") if answer.status_code == 201 else None

        return self._kill_worker_during(
            "celery SIGKILL mid reward run", "gpu", start, lambda pk: self._db_row(RewardModel, pk)
        )

    def worker_kill_export(self) -> FaultResult:
        from annotation.models import Export

        return self._kill_worker_during(
            "celery SIGKILL mid export",
            "light",
            lambda: self._export(self.seeded["data"], kind="raw"),
            lambda pk: self._db_row(Export, pk),
        )

    def disk_full(self) -> FaultResult:
        """A 256 KiB tmpfs over the export folder: the export fails cleanly (no file, no temp
        file); recovery is until an export succeeds once the disk is back."""
        result = FaultResult("export disk full (256 KiB tmpfs)", time.monotonic())
        folder = self.stack.exports_dir
        folder.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0  # fmt: skip
        if not mounted:
            result.note = "skipped: mount not allowed (needs root)"
            return result
        try:
            export_id = self._export(self.seeded["data"], kind="hh")
            status = {}
            deadline = time.monotonic() + 120
            while export_id and time.monotonic() < deadline:
                status = self._export_status(export_id)
                if status.get("status") in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.25)
            leftovers = [p.name for p in folder.rglob("*") if p.name.startswith(".tmp-")]
            result.note = f"export {status.get('status')}: {str(status.get('error', ''))[:60]!r}; temp files {len(leftovers)}"
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        back = time.monotonic()
        result.recovery_s = self.stack_works(back)
        return result


FAULT_NAMES = (
    "pg_restart",
    "pg_kill",
    "redis_down",
    "web_kill",
    "worker_kill_reward",
    "worker_kill_export",
    "disk_full",
)


def throughput(books: Books, start: float, end: float) -> float:
    with books.lock:
        n = sum(1 for t in books.ack_times if start <= t < end)
    return n / max(end - start, 1e-9)


def guarded(phase, *args, empty: dict, **kwargs) -> dict:
    try:
        return phase(*args, **kwargs)
    except Exception:
        traceback.print_exc()
        print(f"bench faults: the phase {phase.__name__} failed (above); its figures are missing", flush=True)
        return empty


def main() -> None:
    from bench.faults_checks import bad_inputs_run, books_check, fuzz_run

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raters", type=int, default=64)
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="the rating phase lasts at least this long"
    )
    parser.add_argument("--fuzz-cases", type=int, default=5000, help="schemathesis cases in all (all roles)")
    parser.add_argument("--think-s", type=float, default=2.0, help="a rater's mean time on a pair")
    parser.add_argument("--redis-down-s", type=float, default=30.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--data-votes", type=int, default=20000, help="imported votes the jobs read")
    parser.add_argument("--reward-epochs", type=int, default=4)
    parser.add_argument("--reward-votes", type=int, default=300, help="votes the reward-model run trains on")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder (logs) afterwards")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated faults to inject (default all): "
        + ",".join(FAULT_NAMES)
        + "; bad inputs and fuzzing run only with --fuzz-cases > 0",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    os.chmod(root, 0o755)
    print(f"stack folder: {root}; load average before: {os.getloadavg()}", flush=True)
    from training.ml.backbones import tiny_bert_dir

    backbone = tiny_bert_dir(root / "backbone")
    stack = Stack(root, web_workers=args.web_workers,
                  env={"REWARD_BACKBONE": str(backbone), "EXPORT_SYNC_MAX_ROWS": "0", "UPLOAD_MAX_BYTES": str(2 * 2**20),
                       "JOB_HEARTBEAT_S": "5"})  # fmt: skip
    stop = threading.Event()
    try:
        stack.pg_init()
        stack.redis_start()
        stack.manage("migrate", "-v", "0")
        django_setup(stack)
        pairs = max(600, int(args.raters * args.minutes * 60 / args.think_s / 2))
        seeded = seed(
            stack, raters=args.raters, pairs=pairs, data_votes=args.data_votes, reward_votes=args.reward_votes
        )
        stack.web_start()
        stack.worker_start("gpu")
        stack.worker_start("light")
        stack.beat_start()
        books = Books()
        threads = [
            threading.Thread(target=rater_loop, daemon=True,
                             args=(stack.web.base_url, name, token, seeded["rating"], books, stop, args.think_s))
            for name, token in seeded["raters"]
        ]  # fmt: skip
        started = time.monotonic()
        for t in threads:
            t.start()
        faults = Faults(stack, seeded, books, args)
        baseline_s = max(40.0, args.minutes * 60 / 8)
        time.sleep(baseline_s)  # the first half warms up (raters log in, workers import)
        baseline = throughput(books, started + baseline_s / 2, time.monotonic())
        results = []
        chosen = [n for n in FAULT_NAMES if not args.only or n in args.only.split(",")]
        for inject in (getattr(faults, name) for name in chosen):
            begin = time.monotonic()
            print(f"  fault: {inject.__name__} ...", flush=True)
            try:
                result = inject()
            except Exception as exc:  # a bench bug or an unforeseen failure: say so, go on
                traceback.print_exc()
                result = FaultResult(
                    inject.__name__, begin, note=f"bench error: {type(exc).__name__}: {exc}"[:120]
                )
            time.sleep(5)
            result.votes_per_s = throughput(books, begin, time.monotonic())
            results.append(result)
            print(f"    recovered in {result.recovery_s} s {result.note}", flush=True)
        while time.monotonic() - started < args.minutes * 60:
            stack.supervise()
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join(timeout=150)
        votes = books_check(books, stack)
        no_bad = {"rows": [], "cases": 0, "server_errors": 0}
        bad = guarded(bad_inputs_run, stack, seeded, empty=no_bad) if args.fuzz_cases else no_bad
        no_fuzz = {"rows": [], "failures": [], "cases": 0, "server_errors": 0}
        fuzz = (
            guarded(fuzz_run, stack, seeded, total_cases=args.fuzz_cases, empty=no_fuzz)
            if args.fuzz_cases
            else no_fuzz
        )
    finally:
        stop.set()
        stack.stop()

    print()
    print(f"raters={args.raters} minutes={args.minutes:g} web_workers={args.web_workers} "
          f"load average after: {os.getloadavg()}")  # fmt: skip
    print_table(
        ["fault", "recovery s", "votes/s", "vs baseline", "note"],
        [["baseline (no fault)", "-", fmt(baseline, 2), "1.00", ""]]
        + [[r.name, "not recovered" if r.recovery_s is None else fmt(r.recovery_s),
            fmt(r.votes_per_s, 2), fmt(r.votes_per_s / baseline if baseline else 0, 2), r.note] for r in results],
    )  # fmt: skip
    print()
    print_table(["check", "value"], [[k, v] for k, v in votes.items()])
    print()
    print_table(["bad input path", "cases", "4xx / CommandError", "server errors", "wrote"], bad["rows"])
    print()
    print_table(["fuzz role", "cases", "5xx", "schema mismatches"], fuzz["rows"])
    for line in fuzz["failures"][:20]:
        print("  mismatch:", line[:300])
    recoveries = [r.recovery_s for r in results if r.recovery_s is not None]
    unrecovered = sum(1 for r in results if r.recovery_s is None and not r.note.startswith("skipped"))
    max_recovery = max(recoveries) if recoveries else 0.0
    print()
    print(
        f"bench faults: acked={votes['acked']} lost={votes['lost']} duplicated={votes['duplicated']} "
        f"phantom={votes['phantom']} stuck_jobs={votes['stuck_jobs']} "
        f"max_recovery_s={'inf' if unrecovered else fmt(max_recovery)} bad_inputs={bad['cases']} "
        f"server_errors={bad['server_errors']} fuzz_cases={fuzz['cases']} fuzz_5xx={fuzz['server_errors']}"
    )
    if not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
