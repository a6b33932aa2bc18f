import io
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotation.models import Assignment, Comparison, Prompt, Response
from annotation.services.imports import comparisons_import


def jsonl(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


GOOD = [
    {"prompt": "What is the capital of France?", "response_a": "Paris.", "response_b": "Lyon."},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Tell me a joke"},
        ],
        "response_a": "Why did the chicken…",
        "response_b": "No.",
        "metadata": {"source": "pilot", "batch": 7},
        "priority": 5,
        "gold": "a",
    },
    # Same prompt as line 1: one Prompt row, two comparisons.
    {"prompt": "What is the capital of France?", "response_a": "Paris", "response_b": "Marseille"},
]


@pytest.mark.django_db
def test_good_file_imports_every_line_with_its_fields(make_project):
    project = make_project(overlap=2)
    lines = jsonl(GOOD[0], "", "   ", GOOD[1], GOOD[2]).encode().splitlines(keepends=True)
    report = comparisons_import(project=project, lines=lines)
    assert report.ok and report.errors == []
    # The gold line gets no assignments of its own (gold mixing hands it out): 2 pairs x k = 2.
    assert (report.lines, report.imported, report.assignments) == (3, 3, 4)

    assert Prompt.objects.filter(project=project).count() == 2
    assert Response.objects.filter(prompt__project=project).count() == 6
    assert Assignment.objects.filter(project=project, state="open").count() == 4
    chat = Comparison.objects.select_related("prompt", "response_a", "response_b").get(priority=5)
    assert chat.prompt.messages == GOOD[1]["messages"]
    assert (chat.response_a.text, chat.response_b.text) == ("Why did the chicken…", "No.")
    assert chat.metadata == {"source": "pilot", "batch": 7} and chat.gold_choice == "a"
    assert chat.votes_needed == 0  # gold
    plain = Comparison.objects.filter(project=project, priority=0).select_related("prompt").first()
    assert plain.prompt.messages == [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.django_db
def test_batches_are_written_in_bulk_and_all_land(make_project):
    project = make_project(overlap=1)
    rows = [{"prompt": f"Q{i}?", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(25)]
    seen = []
    report = comparisons_import(
        project=project,
        lines=io.StringIO(jsonl(*rows)),
        batch_size=10,
        on_progress=seen.append,
        progress_every=10,
    )
    assert report.imported == 25 and seen == [10, 20]
    assert Comparison.objects.filter(project=project).count() == 25


BAD_FILE_ROWS = [
    GOOD[0],  # 1 ok
    "{not json",  # 2
    '["a list"]',  # 3
    {"response_a": "x", "response_b": "y"},  # 4 neither prompt nor messages
    {
        "prompt": "p",
        "messages": [{"role": "user", "content": "p"}],
        "response_a": "x",
        "response_b": "y",
    },  # 5
    {"prompt": "p", "response_a": "", "response_b": "y"},  # 6
    {"prompt": "p", "response_a": "same", "response_b": "same "},  # 7
    {"prompt": "p", "response_a": "x", "response_b": "y", "metadata": [1]},  # 8
    {"prompt": "p", "response_a": "x", "response_b": "y", "priority": "high"},  # 9
    {"prompt": "p", "response_a": "x", "response_b": "y", "gold": "c"},  # 10
    {"messages": [{"role": "bot", "content": "hi"}], "response_a": "x", "response_b": "y"},  # 11
    {"prompt": "p", "response_a": "x", "response_b": "y", "chosen": "x"},  # 12
    "",  # 13 blank: ignored
    GOOD[2],  # 14 ok
    {"prompt": "p", "response_a": 3, "response_b": "y"},  # 15
    {"prompt": "p", "response_a": "x", "response_b": "y", "priority": True},  # 16
]
EXPECTED_BAD = {
    2: "not valid JSON",
    3: "expected a JSON object",
    4: "exactly one of 'prompt' or 'messages'",
    5: "exactly one of 'prompt' or 'messages'",
    6: "'response_a' must be a non-empty string",
    7: "same text",
    8: "'metadata' must be a JSON object",
    9: "'priority' must be a whole number",
    10: "'gold' must be one of",
    11: "role 'bot'",
    12: "unknown field(s) chosen",
    15: "'response_a' must be a non-empty string",
    16: "'priority' must be a whole number",
}


@pytest.mark.django_db
def test_bad_file_reports_every_bad_line_and_writes_nothing(make_project):
    project = make_project()
    report = comparisons_import(project=project, lines=jsonl(*BAD_FILE_ROWS).splitlines(), batch_size=1)
    assert not report.ok and report.imported == 0
    assert [e.line for e in report.errors] == sorted(EXPECTED_BAD)
    for error in report.errors:
        assert EXPECTED_BAD[error.line] in error.reason, (error.line, error.reason)
    assert report.lines == 15
    # batch_size=1 means line 1 was written before line 2 failed: it was rolled back.
    assert not Comparison.objects.exists()
    assert not Prompt.objects.exists() and not Response.objects.exists() and not Assignment.objects.exists()


@pytest.mark.django_db
def test_undecodable_bytes_and_bom(make_project):
    project = make_project()
    lines = [b"\xef\xbb\xbf" + json.dumps(GOOD[0]).encode() + b"\n", b'{"prompt": "\xff"}\n']
    report = comparisons_import(project=project, lines=lines)
    assert [(e.line, e.reason.split(" (")[0]) for e in report.errors] == [(2, "not UTF-8 text")]
    assert not Comparison.objects.exists()


@pytest.fixture
def jsonl_file(tmp_path):
    def write(*rows):
        path = tmp_path / "comparisons.jsonl"
        path.write_text(jsonl(*rows), encoding="utf-8")
        return str(path)

    return write


@pytest.mark.django_db
def test_command_imports_by_slug_or_id_and_prints_summary(make_project, jsonl_file):
    project = make_project(overlap=3)
    out = io.StringIO()
    call_command("import_comparisons", jsonl_file(*GOOD), "--project", project.slug, stdout=out)
    assert f"Imported 3 comparisons into {project.slug} (6 assignments" in out.getvalue()  # one is gold
    new = {**GOOD[0], "response_b": "Nice."}
    call_command("import_comparisons", jsonl_file(new), "--project", str(project.pk), stdout=out)
    assert Comparison.objects.filter(project=project).count() == 4


@pytest.mark.django_db
def test_command_bad_file_lists_lines_and_fails(make_project, jsonl_file):
    project = make_project()
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"13 bad line\(s\) of 15; nothing was imported"):
        call_command("import_comparisons", jsonl_file(*BAD_FILE_ROWS), "--project", project.slug, stderr=err)
    printed = err.getvalue().splitlines()
    assert [line.split(":")[0] for line in printed] == [f"line {n}" for n in sorted(EXPECTED_BAD)]
    assert not Comparison.objects.exists()


@pytest.mark.django_db
def test_command_unknown_project_and_missing_file(make_project, jsonl_file, tmp_path):
    make_project()
    with pytest.raises(CommandError, match="No project with slug or id 'nope'"):
        call_command("import_comparisons", jsonl_file(*GOOD), "--project", "nope")
    project = make_project()
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_comparisons", str(tmp_path / "missing.jsonl"), "--project", project.slug)


@pytest.mark.django_db(transaction=True)
def test_command_exit_status_and_output_in_a_real_process(make_project, jsonl_file):
    """The console contract: exit 1 with the reasons on stderr, exit 0 with a summary."""
    project = make_project()  # committed (transaction=True), so the child process sees it
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }

    def run(path):
        cmd = [sys.executable, "manage.py", "import_comparisons", path, "--project", project.slug]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=settings.BASE_DIR)

    bad = run(jsonl_file(GOOD[0], "{oops", GOOD[2]))
    assert bad.returncode == 1, bad.stderr
    assert "line 2: not valid JSON" in bad.stderr and "1 bad line(s) of 3" in bad.stderr
    assert not Comparison.objects.exists()

    good = run(jsonl_file(*GOOD))
    assert good.returncode == 0, good.stderr
    assert f"Imported 3 comparisons into {project.slug}" in good.stdout
    assert Comparison.objects.filter(project=project).count() == 3


@pytest.mark.django_db
def test_upload_page_imports_or_shows_every_bad_line(client, make_user, make_project):
    project = make_project()
    client.force_login(make_user("ops"))
    url = f"/ops/projects/{project.pk}/import/"
    assert client.get(url).status_code == 200

    bad = SimpleUploadedFile("bad.jsonl", jsonl(*BAD_FILE_ROWS).encode(), content_type="application/jsonl")
    r = client.post(url, {"file": bad})
    assert r.status_code == 400
    page = r.content.decode()
    assert "13 bad lines of 15; nothing was imported" in page
    for number in EXPECTED_BAD:
        assert f"line {number}:" in page
    assert "&#x27;metadata&#x27; must be a JSON object" in page  # escaped, not raw
    assert not Comparison.objects.exists()

    good = SimpleUploadedFile("good.jsonl", jsonl(*GOOD).encode(), content_type="application/jsonl")
    r = client.post(url, {"file": good})
    assert r.status_code == 200
    assert "Imported 3 comparisons" in r.content.decode()
    assert Comparison.objects.filter(project=project).count() == 3


@pytest.mark.django_db
def test_prompts_are_shared_across_batches_and_imports(make_project):
    project = make_project(overlap=1)
    rows = [{"prompt": f"Q{i % 3}?", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(7)]
    assert comparisons_import(project=project, lines=jsonl(*rows).splitlines(), batch_size=2).imported == 7
    more = [{**row, "response_b": "other"} for row in rows[:3]]
    assert comparisons_import(project=project, lines=jsonl(*more).splitlines()).imported == 3
    assert Prompt.objects.filter(project=project).count() == 3
    by_prompt = {
        p.messages[0]["content"]: p.comparisons.count() for p in Prompt.objects.filter(project=project)
    }
    assert by_prompt == {"Q0?": 4, "Q1?": 3, "Q2?": 3}
    # The same text in another project is another prompt.
    other = make_project()
    comparisons_import(project=other, lines=jsonl(rows[0]).splitlines())
    assert Prompt.objects.count() == 4


@pytest.mark.django_db
def test_reimporting_a_line_skips_it_as_a_duplicate_and_reports_it(
    make_project, jsonl_file, client, make_user
):
    """Issue 13: comparison imports are idempotent by content (prompt + both responses)."""
    project = make_project(overlap=2)
    first = comparisons_import(project=project, lines=jsonl(*GOOD).splitlines())
    assert (first.imported, first.duplicates) == (3, [])
    # Again, with a fourth new line and the first line twice: only the new line is written.
    fresh = {"prompt": "New?", "response_a": "Yes.", "response_b": "No."}
    again = comparisons_import(project=project, lines=jsonl(GOOD[0], fresh, GOOD[1], fresh).splitlines())
    assert again.ok and (again.lines, again.imported, again.assignments) == (4, 1, 2)
    assert again.duplicates == [
        (1, "already in the project"),
        (3, "already in the project"),
        (4, "same pair as line 2"),
    ]
    assert Comparison.objects.filter(project=project).count() == 4
    assert Assignment.objects.filter(project=project).count() == 6  # the gold pair has none
    # Different metadata, priority or gold does not make a new pair; swapped responses do.
    swapped = {**GOOD[0], "response_a": GOOD[0]["response_b"], "response_b": GOOD[0]["response_a"]}
    moved = {**GOOD[1], "priority": 9, "metadata": {}}
    report = comparisons_import(project=project, lines=jsonl(moved, swapped).splitlines(), batch_size=1)
    assert report.imported == 1 and [d[0] for d in report.duplicates] == [1]
    # Another project is another queue: the same line is new there.
    assert comparisons_import(project=make_project(), lines=jsonl(GOOD[0]).splitlines()).imported == 1

    out = io.StringIO()
    call_command("import_comparisons", jsonl_file(*GOOD), "--project", project.slug, stdout=out)
    assert "Imported 0 comparisons" in out.getvalue() and "3 duplicates skipped" in out.getvalue()
    client.force_login(make_user("ops"))
    upload = SimpleUploadedFile("again.jsonl", jsonl(*GOOD).encode(), content_type="application/jsonl")
    page = client.post(f"/ops/projects/{project.pk}/import/", {"file": upload}).content.decode()
    assert "Imported 0 comparisons" in page and "3 duplicates skipped" in page
