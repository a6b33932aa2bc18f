"""Export benchmark (issue 4): stream 1,000,000 votes out of PostgreSQL as JSON Lines and Parquet.

    .venv/bin/python bench/export.py            # 1,000,000 votes on 200,000 comparisons (k = 5)
    .venv/bin/python bench/export.py --quick    # smoke run: 50,000 votes on 10,000 comparisons

Set-up: the database `bench_export` is dropped, created and migrated; rows are generated with
INSERT ... SELECT generate_series straight into the real tables (50 raters, two policy
responses per prompt, a few gold items, tie / both-bad votes and unsafe flags). With --reuse, the
data an earlier run left behind (--keep-db, or --reuse itself) is used as it is when it has the
asked-for size, which saves the minutes of set-up; otherwise it is made afresh.

Each export (raw votes and TRL pairs, as JSONL and as Parquet) runs in its own subprocess
through the real service (`export_run`: count and card numbers, typed rows streamed in chunks,
encoder, file written to a temporary path, fsynced and renamed, sha256, card, snapshot row), so
each reports its own wall time (everything a user waits for) and peak RSS. The floor, in the same run: PostgreSQL `COPY (the raw-votes join, same
columns, same filter, same ORDER BY) TO STDOUT` into a file, also in a subprocess.

Targets: raw-votes JSONL at least half the COPY rows per second; peak RSS under 300 MB each.
The last line printed is the one-line summary the issue asks for.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REPO_ROOT,
    RESPONSE_FILLER,
    add_database_args,
    bench_database,
    bench_env,
    database_url_with_name,
    fmt,
    print_table,
)

TARGET_RATIO_TO_COPY = 0.5
TARGET_PEAK_RSS_MB = 300.0
RATERS = 50
VOTES_PER_COMPARISON = 5
RUNS = [("raw", "jsonl"), ("raw", "parquet"), ("trl", "jsonl"), ("trl", "parquet")]


def _psycopg():
    import psycopg

    return psycopg


def existing_project(url: str, *, comparisons: int) -> int | None:
    """The bench project of an earlier run when its data has the asked-for size, else None."""
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError:  # no such database
        return None
    with conn:
        try:
            row = conn.execute(
                """SELECT pr.id, (SELECT count(*) FROM annotation_comparison c WHERE c.project_id = pr.id),
                          (SELECT count(*) FROM annotation_preference p
                             JOIN annotation_comparison c ON c.id = p.comparison_id
                            WHERE c.project_id = pr.id)
                   FROM annotation_project pr WHERE pr.slug = 'bench'"""
            ).fetchone()
        except psycopg.Error:
            return None
    if row and row[1] == comparisons and row[2] == comparisons * VOTES_PER_COMPARISON:
        return row[0]
    return None


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0", "--no-input"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        check=True,
    )


def seed(url: str, *, comparisons: int) -> int:
    """Generate the rows in SQL; returns the project id."""
    psycopg = _psycopg()
    with psycopg.connect(url, autocommit=True) as conn:
        project_id = conn.execute(
            """INSERT INTO annotation_project
                   (name, slug, guidelines, overlap, lease_seconds, export_secret, created_at)
               VALUES ('bench', 'bench', '', %s, 300, md5('bench-secret') || md5('bench-secret-2'), now())
               RETURNING id""",
            [VOTES_PER_COMPARISON],
        ).fetchone()[0]
        conn.execute(
            """INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                                      is_staff, is_active, date_joined)
               SELECT '!', false, 'rater' || g, '', '', '', false, true, now()
               FROM generate_series(1, %s) g""",
            [RATERS],
        )
        conn.execute(
            """INSERT INTO annotation_prompt (project_id, purpose, messages, content_hash, reference_answer,
                                              metadata, created_at)
               SELECT %(p)s, 'rating',
                      jsonb_build_array(jsonb_build_object(
                          'role', 'user', 'content', 'Question ' || g || ': how would you explain this?')),
                      md5('prompt ' || g) || md5('prompt hash ' || g), '', '{}', now()
               FROM generate_series(1, %(n)s) g""",
            {"p": project_id, "n": comparisons},
        )
        conn.execute(
            """INSERT INTO annotation_response (prompt_id, text, source, model_name, policy_checkpoint_id,
                                                generation_params, metadata, created_at)
               SELECT p.id, 'Answer ' || s || ' to ' || p.id || '. ' || %(filler)s, 'policy', 'bench',
                      1 + (p.id + s) %% 4, '{}', '{}', now()
               FROM annotation_prompt p CROSS JOIN generate_series(0, 1) s
               WHERE p.project_id = %(p)s
               ORDER BY p.id, s""",
            {"p": project_id, "filler": RESPONSE_FILLER},
        )
        conn.execute(
            """INSERT INTO annotation_comparison (project_id, prompt_id, response_a_id, response_b_id,
                   votes_needed, votes_count, priority, round_id, gold_choice, metadata, content_key,
                   created_at)
               SELECT %(p)s, r.prompt_id, min(r.id), max(r.id), %(k)s, %(k)s, 0, 1 + r.prompt_id %% 3,
                      CASE WHEN r.prompt_id %% 50 = 0 THEN 'a' ELSE '' END, '{}', '', now()
               FROM annotation_response r JOIN annotation_prompt p ON p.id = r.prompt_id
               WHERE p.project_id = %(p)s
               GROUP BY r.prompt_id ORDER BY r.prompt_id""",
            {"p": project_id, "k": VOTES_PER_COMPARISON},
        )
        # k distinct raters per comparison: (id + 7j) mod 50 differs for j = 0..4.
        conn.execute(
            """INSERT INTO annotation_preference (rater_id, comparison_id, choice, strength, rationale,
                   unsafe_a, unsafe_a_category, unsafe_b, unsafe_b_category, shown_left, client_ms, lease_ms,
                   idempotency_key, source, created_at, updated_at)
               SELECT u.first + (c.id + 7 * j) %% %(raters)s, c.id, ch.choice,
                      CASE WHEN ch.choice IN ('a', 'b') THEN 1 + x.h %% 3 END,
                      CASE WHEN x.h %% 10 = 0 THEN 'Clearer and more correct.' ELSE '' END,
                      x.h %% 97 = 0, CASE WHEN x.h %% 97 = 0 THEN 'violence' ELSE '' END,
                      x.h %% 89 = 0, CASE WHEN x.h %% 89 = 0 THEN 'pii' ELSE '' END,
                      CASE WHEN x.h %% 2 = 0 THEN 'a' ELSE 'b' END,
                      2000 + x.h %% 30000, 2500 + x.h %% 30000,
                      md5(c.id || ':' || j), 'rater',
                      timestamptz '2025-01-01 00:00:00+00' + (c.id * 5 + j) * interval '1 second',
                      timestamptz '2025-01-01 00:00:00+00' + (c.id * 5 + j) * interval '1 second'
               FROM annotation_comparison c
               CROSS JOIN generate_series(0, %(k)s - 1) j
               CROSS JOIN (SELECT min(id) AS first FROM auth_user WHERE username LIKE 'rater%%') u
               CROSS JOIN LATERAL (SELECT abs(hashint4((c.id * 5 + j)::int)) AS h) x
               CROSS JOIN LATERAL (SELECT CASE WHEN x.h %% 10 < 6 THEN 'a' WHEN x.h %% 10 < 9 THEN 'b'
                                               WHEN x.h %% 20 = 9 THEN 'tie' ELSE 'both_bad' END AS choice) ch
               WHERE c.project_id = %(p)s
               ORDER BY c.id, j""",
            {"p": project_id, "k": VOTES_PER_COMPARISON, "raters": RATERS},
        )
        conn.execute("VACUUM ANALYZE")
    return project_id


# --------------------------------------------------------------------------------------------
# Children: one export, or the COPY floor, per process (own peak RSS)
# --------------------------------------------------------------------------------------------


def child_export(kind: str, fmt_: str, project_id: int) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from annotation.models import Export, Project
    from annotation.services.exports import export_create, export_run

    project = Project.objects.get(pk=project_id)
    export = export_create(project=project, kind=kind, fmt=fmt_, filters={}, user=None, delivery="command")
    t0 = time.perf_counter()
    export = export_run(export_id=export.pk)
    seconds = time.perf_counter() - t0
    if export.status != Export.Status.SUCCEEDED:
        raise SystemExit(f"export failed: {export.error}")
    return {"rows": export.row_count, "seconds": seconds, "bytes": export.bytes, "sha256": export.sha256}


def child_copy(project_id: int, out_dir: str) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from annotation.exporters.filters import parse_filters
    from annotation.exporters.sql import export_sql
    from annotation.models import Project
    from annotation.selectors import ExportSnapshotReader

    project = Project.objects.get(pk=project_id)
    with ExportSnapshotReader(project=project, kind="raw", filters=parse_filters({})) as reader:
        raters = reader._raters()
        sql, params = export_sql(kind="raw", filters=parse_filters({}), project_id=project_id, raters=raters)
        path = Path(out_dir) / "copy.tsv"
        rows = 0
        t0 = time.perf_counter()
        with reader.conn.cursor() as cur, open(path, "wb") as fh:
            with cur.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
                for data in copy:
                    fh.write(data)
            fh.flush()
        seconds = time.perf_counter() - t0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            rows += block.count(b"\n")
    connection.close()
    return {"rows": rows, "seconds": seconds, "bytes": path.stat().st_size}


def run_child(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50,000 votes on 10,000 comparisons")
    parser.add_argument("--comparisons", type=int, default=None, help="default 200,000 (10,000 with --quick)")
    add_database_args(
        parser, db_name="bench_export", redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the data of an earlier --keep-db run of the same size (skips the set-up); implies --keep-db",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated runs to time, e.g. raw-jsonl,trl-parquet (default: all)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        what, *rest = args.child
        if what == "export":
            result = child_export(rest[0], rest[1], int(rest[2]))
        else:
            result = child_copy(int(rest[0]), rest[1])
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps(result))
        return 0

    comparisons = args.comparisons or (10_000 if args.quick else 200_000)
    bench_url = database_url_with_name(args.database_url, args.db_name)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env = bench_env(bench_url, args.redis_url, "bench-export", EXPORTS_DIR=str(work / "exports"))
    print(
        f"bench export: {comparisons * VOTES_PER_COMPARISON:,} votes on {comparisons:,} comparisons, "
        f"{os.cpu_count()} CPUs, database {args.db_name}",
        flush=True,
    )
    t0 = time.perf_counter()
    project_id = existing_project(bench_url, comparisons=comparisons) if args.reuse else None
    keep_db = args.keep_db or args.reuse
    runs = [r for r in RUNS if not args.only or f"{r[0]}-{r[1]}" in args.only.split(",")]
    try:
        with bench_database(args.database_url, args.db_name, keep=keep_db, recreate=project_id is None):
            copy, results = run_all(env, bench_url, project_id, comparisons, runs, work, t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the export files: ~0.5 GB a run
    return summary(copy, results)


def run_all(env, bench_url: str, project_id, comparisons: int, runs, work: Path, t0: float):
    """Migrate, seed (unless reusing), then the COPY floor and every export, each in a child.
    Returns (the floor's result, {(kind, format): result})."""
    migrate(env)
    if project_id is None:
        project_id = seed(bench_url, comparisons=comparisons)
        print(f"set-up (create, migrate, seed): {time.perf_counter() - t0:.1f} s", flush=True)
    else:
        print(f"reusing the data of an earlier run (project {project_id})", flush=True)

    copy = run_child(["--child", "copy", str(project_id), str(work)], env)
    results = {}
    for kind, fmt_ in runs:
        results[(kind, fmt_)] = run_child(["--child", "export", kind, fmt_, str(project_id)], env)
        r = results[(kind, fmt_)]
        print(f"  {kind} {fmt_}: {r['rows']:,} rows in {r['seconds']:.2f} s", flush=True)
    return copy, results


def summary(copy: dict, results: dict) -> int:
    """Print the table, the targets and the one-line summary."""
    copy_rps = copy["rows"] / copy["seconds"]
    table = [["COPY floor (raw join)", f"{copy['rows']:,}", fmt(copy["seconds"], 2), f"{copy_rps:,.0f}",
              fmt(copy["peak_rss_mb"]), f"{copy['bytes'] / 2**20:,.1f}", "1.00"]]  # fmt: skip
    for (kind, fmt_), r in results.items():
        rps = r["rows"] / r["seconds"]
        table.append(
            [
                f"{kind} {fmt_}",
                f"{r['rows']:,}",
                fmt(r["seconds"], 2),
                f"{rps:,.0f}",
                fmt(r["peak_rss_mb"]),
                f"{r['bytes'] / 2**20:,.1f}",
                fmt(rps / copy_rps, 2),
            ]  # fmt: skip
        )
    print()
    print_table(["export", "rows", "seconds", "rows/s", "peak RSS MB", "MiB", "ratio to COPY"], table)
    nan = {"rows": float("nan"), "seconds": 1.0}
    jsonl = results.get(("raw", "jsonl"), nan)
    parquet = results.get(("raw", "parquet"), nan)
    jsonl_rps = jsonl["rows"] / jsonl["seconds"]
    parquet_rps = parquet["rows"] / parquet["seconds"]
    peak = max(r["peak_rss_mb"] for r in results.values())
    ratio = jsonl_rps / copy_rps
    print()
    print(
        f"targets: raw JSONL >= {TARGET_RATIO_TO_COPY} x COPY rows/s: {'met' if ratio >= TARGET_RATIO_TO_COPY else 'MISSED'};"
        f" peak RSS < {TARGET_PEAK_RSS_MB:.0f} MB for every format: {'met' if peak < TARGET_PEAK_RSS_MB else 'MISSED'}"
    )
    print(
        f"bench export: jsonl_rows_per_s={jsonl_rps:.0f} parquet_rows_per_s={parquet_rps:.0f} "
        f"copy_rows_per_s={copy_rps:.0f} ratio_to_copy={ratio:.2f} peak_rss_mb={peak:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
