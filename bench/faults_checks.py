"""bench/faults.py's books and hostile inputs: the votes and jobs checked after the faults, bad
input over every write path, and the schemathesis fuzz run against the live stack."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import REPO_ROOT

JOB_WAIT_S = 300  # how long the queue may take to drain before a job counts as stuck


# --- the books -------------------------------------------------------------------------------


def books_check(books, stack) -> dict:
    from django.db import connections

    from annotation.models import Export, Preference
    from core.files import temp_entries
    from core.jobs import UNFINISHED, job_models

    connections.close_all()
    stored = list(
        Preference.objects.filter(rater__username__startswith="bench-r").values_list(
            "rater__username", "idempotency_key"
        )
    )
    keys = [tuple(row) for row in stored]
    unique = set(keys)
    deadline = time.monotonic() + JOB_WAIT_S
    while time.monotonic() < deadline:
        stack.supervise()
        stuck = {m.job_kind: m.objects.filter(status__in=UNFINISHED).count() for m in job_models()}
        if not sum(stuck.values()):
            break
        time.sleep(2)
    temp = temp_entries(stack.exports_dir, depth=3) + temp_entries(stack.models_dir, depth=3)
    bad_files = 0
    for export in Export.objects.filter(status="succeeded").exclude(path=""):
        folder = stack.exports_dir / export.path
        if not folder.is_dir() or not any(
            p.is_file() and not p.name.startswith(".tmp-") for p in folder.iterdir()
        ):
            bad_files += 1
    return {
        "acked": len(books.acked),
        "sent": len(books.sent),
        "stored": len(keys),
        "lost": len(books.acked - unique),
        "duplicated": len(keys) - len(unique),
        "phantom": len(unique - books.sent),
        "stuck_jobs": sum(stuck.values()),
        "stuck_by_kind": json.dumps({k: v for k, v in stuck.items() if v}),
        "half_written_artefacts": len(temp) + bad_files,
        "vote_answers_4xx": json.dumps(books.refused),
        "vote_errors_retried": books.errors,
        "processes_restarted": json.dumps(stack.restarts),
    }


# --- bad input --------------------------------------------------------------------------------

DEEP = "[" * 10_000 + "]" * 10_000
BIG_INT = "1" + "0" * 5000


def hostile_values() -> dict[str, object]:
    """Raw JSON texts (str) to put where a value goes."""
    return {
        "nul": json.dumps("a\u0000b"),
        "lone surrogate": '"\\ud800"',
        "10 MB string": json.dumps("x" * 10_000_000),
        "10,000-deep": DEEP,
        "huge integer": BIG_INT,
        "1e400": "1e400",
        "NaN": "NaN",
        "Infinity": "-Infinity",
        "wrong type (object)": '{"a": 1}',
        "wrong type (list)": "[1, 2]",
        "wrong type (bool)": "true",
        "empty string": '""',
        "negative": "-1",
        "2^63": str(2**63),
        "date overflow": '"0001-01-01T00:00:00+14:00"',
        "date 9999": '"9999-12-31"',
    }


def api_cases(seeded: dict) -> list[tuple[str, str, str, dict]]:
    """(role, method, url, template) where template's values are '%s' slots for a hostile value."""
    p = seeded["rating"]
    return [
        ("rater", "POST", "/api/comparisons/1/preference/", {"choice": "%s", "idempotency_key": "k"}),
        ("rater", "POST", "/api/comparisons/1/preference/", {"choice": "a", "strength": "%s", "idempotency_key": "k"}),
        ("rater", "POST", "/api/comparisons/1/preference/", {"choice": "a", "rationale": "%s", "idempotency_key": "k"}),
        ("rater", "POST", "/api/comparisons/1/preference/", {"choice": "tie", "client_ms": "%s", "idempotency_key": "k"}),
        ("rater", "POST", "/api/comparisons/1/skip/", {"reason": "%s"}),
        ("researcher", "POST", "/api/exports/", {"project": "%s", "kind": "raw", "format": "jsonl"}),
        ("researcher", "POST", "/api/exports/", {"project": p, "kind": "raw", "format": "jsonl", "filters": {"since": "%s"}}),
        ("researcher", "POST", "/api/exports/", {"project": p, "kind": "trl", "format": "jsonl", "filters": {"min_agreement": "%s"}}),
        ("ops", "POST", f"/api/training/projects/{p}/reward-models/", {"config": {"learning_rate": "%s"}}),
        ("ops", "POST", f"/api/training/projects/{p}/reward-models/", {"config": "%s"}),
        ("ops", "PATCH", f"/api/training/projects/{p}/round-settings/", {"every_hours": "%s"}),
        ("ops", "PATCH", f"/api/training/projects/{p}/round-settings/", {"blocklist": "%s"}),
        ("ops", "POST", f"/api/training/projects/{p}/rollback/", {"checkpoint": "%s"}),
        ("ops", "POST", f"/api/training/projects/{p}/judge-runs/", {"judge": "%s"}),
    ]  # fmt: skip


def _fill(template: dict, raw: str) -> str:
    return json.dumps(template).replace('"%s"', raw)


def _count(status: int | None) -> tuple[int, int]:
    """(clear refusal, server error) for an HTTP answer (None: no answer at all)."""
    if status is None or status >= 500:
        return 0, 1
    return (1, 0) if 400 <= status < 500 else (0, 0)


def _table_writes(seeded: dict) -> int:
    from django.db import connections

    from annotation.models import Comparison, Preference, Prompt

    connections.close_all()
    ids = [seeded["rating"], seeded["probe"]]
    return (
        Comparison.objects.filter(project_id__in=ids).count()
        + Prompt.objects.filter(project_id__in=ids).count()
        + Preference.objects.filter(comparison__project_id__in=ids).count()
    )


def jsonl_files(tmp: Path) -> dict[str, Path]:
    """Hostile JSONL files (and a gzip bomb) for the uploads and the import commands."""
    tmp.mkdir(parents=True, exist_ok=True)
    good = '{"prompt": "Q?", "response_a": "A", "response_b": "B", "chosen": "A", "rejected": "B"}'
    files = {
        "nul byte": b'{"prompt": "Q\x00?", "response_a": "A", "response_b": "B"}\n',
        "invalid utf-8": b'{"prompt": "\xff\xfe", "response_a": "A", "response_b": "B"}\n',
        "lone surrogate": b'{"prompt": "\\ud800", "response_a": "A", "response_b": "B"}\n',
        "10 MB line": ('{"prompt": "' + "x" * 10_000_000 + '", "response_a": "A", "response_b": "B"}\n').encode(),
        "200k lines": (good + "\n") * 199_999 + "not json\n",
        "10,000-deep": (DEEP + "\n").encode(),
        "huge integer": ('{"prompt": "Q", "response_a": "A", "response_b": "B", "priority": ' + BIG_INT + "}\n").encode(),
        "NaN": b'{"prompt": "Q", "response_a": "A", "response_b": "B", "metadata": {"x": NaN}}\n',
        "wrong types": b'{"prompt": 5, "response_a": [], "response_b": {}}\n',
    }  # fmt: skip
    paths = {}
    for name, content in files.items():
        path = tmp / (re.sub(r"\W+", "-", name) + ".jsonl")
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths[name] = path
    bomb = tmp / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        chunk = b"\n" * (1 << 20)
        for _ in range(1024):  # 1 GiB of newlines, about 1 MB compressed
            fh.write(chunk)
    paths["gzip bomb (1 GiB)"] = bomb
    truncated = tmp / "truncated.jsonl.gz"
    truncated.write_bytes(gzip.compress((good + "\n").encode() * 1000)[:-40])
    paths["truncated gzip"] = truncated
    return paths


def _ops_session(base_url: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=300, follow_redirects=False)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    client.post("/accounts/login/", data={"username": "bench-ops", "password": "bench-ops-Bench-pw-9",
                                          "csrfmiddlewaretoken": token})  # fmt: skip
    return client


def _upload(
    client: httpx.Client, url: str, name: str, content: bytes, extra: dict | None = None
) -> int | None:
    page = client.get(url)
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    data = {"csrfmiddlewaretoken": match.group(1) if match else "", **(extra or {})}
    try:
        return client.post(
            url, data=data, files={"file": (name, content, "application/octet-stream")}
        ).status_code
    except httpx.HTTPError:
        return None


class _Tally:
    def __init__(self, seeded: dict):
        self.seeded = seeded
        self.rows: dict[str, list[int]] = {}

    def record(self, path: str, refused: int, server_error: int, wrote: int) -> None:
        row = self.rows.setdefault(path, [0, 0, 0, 0])
        row[0] += 1
        row[1] += refused
        row[2] += server_error
        row[3] += wrote

    def writes(self) -> int:
        return _table_writes(self.seeded)


def _api_bad_inputs(tally: _Tally, base: str, seeded: dict) -> None:
    tokens = {"rater": seeded["raters"][0][1], "researcher": seeded["researcher"], "ops": seeded["ops"]}
    clients = {
        r: httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Token {t}"})
        for r, t in tokens.items()
    }
    json_headers = {"Content-Type": "application/json"}
    for role, method, url, template in api_cases(seeded):
        for raw in hostile_values().values():
            before = tally.writes()
            try:
                status = clients[role].request(
                    method, url, content=_fill(template, raw), headers=json_headers
                )
                code = status.status_code
            except httpx.HTTPError:
                code = None
            path = f"API JSON {method} {re.sub(r'/[0-9]+/', '/<id>/', url)}"[:60]
            tally.record(path, *_count(code), int(tally.writes() != before))
    for raw_body in (b"\xff\xfe{", b'{"choice": "a"\x00}', DEEP.encode()):
        try:
            code = (
                clients["rater"]
                .post("/api/comparisons/1/preference/", content=raw_body, headers=json_headers)
                .status_code
            )
        except httpx.HTTPError:
            code = None
        tally.record("API raw body", *_count(code), 0)
    queries = (
        "/api/exports/?project=abc",
        "/api/exports/?project=" + "9" * 30,
        "/api/preferences/mine/?page=\u00b2",
        "/api/comparisons/99999999999999999999/preference/",
    )
    for query in queries:
        try:
            code = clients["researcher" if "exports" in query else "rater"].get(query).status_code
        except httpx.HTTPError:
            code = None
        tally.record("API query / path", *_count(code), 0)


def _upload_bad_inputs(tally: _Tally, base: str, seeded: dict, files: dict[str, Path]) -> None:
    session = _ops_session(base)
    pages = {
        "upload comparisons": f"/ops/projects/{seeded['probe']}/import/",
        "upload prompts": f"/ops/projects/{seeded['probe']}/prompts/",
    }
    uploads = [(path.name, path.read_bytes) for path in files.values()]
    uploads += [
        ("big.jsonl", lambda: b"\n" * (3 * 2**20)),  # over UPLOAD_MAX_BYTES (2 MiB in this stack)
        ("../../../../etc/passwd", files["wrong types"].read_bytes),  # path traversal in the name
    ]
    for page_name, url in pages.items():
        for name, content in uploads:
            before = tally.writes()
            code = _upload(session, url, name, content())
            wrote = int(tally.writes() != before)
            refused, server_error = _count(code)
            # A page answers a file it refuses with its form and report (400, or 200 with errors).
            tally.record(page_name, refused or int(code == 200 and not wrote), server_error, wrote)


def _command_bad_inputs(tally: _Tally, stack, files: dict[str, Path]) -> None:
    commands = {"import_comparisons": [], "import_prompts": [], "import_preferences": ["--format", "trl"]}
    paths = [*files.values(), Path("../../../../etc/passwd")]
    for command, extra in commands.items():
        for path in paths:
            before = tally.writes()
            try:
                done = stack.manage(
                    command, str(path), "--project", "bench-probe", *extra,
                    check=False, capture_output=True, timeout=600,
                )  # fmt: skip
                traceback = b"Traceback (most recent call last)" in done.stderr
                refused, server_error = int(done.returncode != 0 and not traceback), int(traceback)
            except subprocess.TimeoutExpired:
                refused, server_error = 0, 1
            tally.record(f"command {command}", refused, server_error, int(tally.writes() != before))


def bad_inputs_run(stack, seeded: dict) -> dict:
    """Every write path with hostile input; a case is clear when it gets a 4xx (or a
    CommandError), a server error when it gets a 5xx, no answer, or a traceback."""
    tally = _Tally(seeded)
    files = jsonl_files(stack.root / "hostile")
    _api_bad_inputs(tally, stack.web.base_url, seeded)
    _upload_bad_inputs(tally, stack.web.base_url, seeded, files)
    _command_bad_inputs(tally, stack, files)
    table = [[path, *counts] for path, counts in tally.rows.items()]
    return {
        "rows": table,
        "cases": sum(r[1] for r in table),
        "server_errors": sum(r[3] for r in table),
        "wrote": sum(r[4] for r in table),
    }


# --- fuzz ------------------------------------------------------------------------------------


def fuzz_run(stack, seeded: dict, *, total_cases: int) -> dict:
    """schemathesis against the live /api/schema/ as each role (tests/api_contract.py)."""
    sys.path.insert(0, str(REPO_ROOT))
    from tests.api_contract import fuzz, load_schema

    tokens = {"rater": seeded["raters"][0][1], "researcher": seeded["researcher"], "ops": seeded["ops"]}
    url = f"{stack.web.base_url}/api/schema/?format=json"
    rows, failures, cases, server_errors = [], [], 0, 0
    for role, token in tokens.items():
        headers = {"Authorization": f"Token {token}"}
        schema = load_schema(url=url, headers=headers)
        operations = sum(1 for _ in schema.get_all_operations())
        per_operation = max(1, -(-total_cases // (operations * len(tokens))))
        result = fuzz(schema, headers=headers, max_examples=per_operation, base_url=stack.web.base_url)
        rows.append([role, result.cases, result.server_errors, len(result.failures)])
        failures += [f"{role}: {f}" for f in result.failures]
        cases += result.cases
        server_errors += result.server_errors
    return {"rows": rows, "failures": failures, "cases": cases, "server_errors": server_errors}
