"""Prompt-pool import: validation with line numbers, all or nothing, dedupe by content hash,
the command, the ops upload and the demo pool."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Prompt
from annotation.services.comparisons import prompt_hash
from annotation.services.prompt_imports import prompts_import


def lines(*objs):
    return [json.dumps(o) if not isinstance(o, str) else o for o in objs]


def import_objects(project, *objs, **kw):
    """prompts_import over one line per object (a string is a line as it is)."""
    return prompts_import(project=project, lines=lines(*objs), **kw)


@pytest.mark.django_db
def test_valid_file_adds_prompts_with_metadata_reference_and_hash(make_project):
    project = make_project()
    report = import_objects(
        project,
        {"prompt": "What is 2+2?", "reference_answer": "4", "metadata": {"topic": "math"}},
        "",
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
    )
    assert report.ok and report.lines == 2 and report.imported == 2 and not report.duplicates
    first = Prompt.objects.get(
        project=project, content_hash=prompt_hash([{"role": "user", "content": "What is 2+2?"}])
    )
    assert first.reference_answer == "4" and first.metadata == {"topic": "math", "pool": "import"}
    assert Prompt.objects.filter(project=project).count() == 2


@pytest.mark.django_db
def test_bad_lines_are_all_reported_with_numbers_and_nothing_is_written(make_project):
    project = make_project()
    report = import_objects(
        project,
        {"prompt": "fine"},
        "{not json",
        {"prompt": "x", "messages": [{"role": "user", "content": "y"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"prompt": "ok", "extra": 1},
        {"prompt": "ok", "reference_answer": 5},
        {"prompt": "ok", "metadata": []},
        [1, 2],
    )
    assert not report.ok and report.imported == 0
    assert [e.line for e in report.errors] == [2, 3, 4, 5, 6, 7, 8]
    assert "exactly one of 'prompt' or 'messages'" in report.errors[1].reason
    assert "assistant turn" in report.errors[2].reason and "extra" in report.errors[3].reason
    assert not Prompt.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_duplicates_in_the_file_and_in_the_project_are_skipped_by_content_hash(make_project):
    project = make_project(pairs=1)  # has the prompt "Question 0?"
    report = import_objects(
        project,
        {"prompt": "New one"},
        {"messages": [{"role": "user", "content": "New one"}]},  # same content as line 1
        {"prompt": "Question 0?"},
    )
    assert report.ok and report.imported == 1
    assert report.duplicates == [(2, "same prompt as line 1"), (3, "already in the project")]
    again = import_objects(project, {"prompt": "New one"})
    assert again.imported == 0 and again.duplicates == [(1, "already in the project")]
    assert Prompt.objects.filter(project=project).count() == 2


@pytest.mark.django_db
def test_command_imports_and_refuses_a_bad_file(make_project, tmp_path, capsys):
    project = make_project()
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines({"prompt": "a?"}, {"prompt": "b?"})))
    call_command("import_prompts", str(good), "--project", project.slug)
    assert "Imported 2 prompts" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines({"prompt": "c?"}, {"nope": 1})))
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_prompts", str(bad), "--project", str(project.pk))
    assert Prompt.objects.filter(project=project).count() == 2


@pytest.mark.django_db
def test_ops_upload_needs_operate_and_reports_errors(make_project, make_user, client):
    project = make_project()
    url = reverse("ops-project-prompts", args=[project.pk])
    client.force_login(make_user("rater"))
    assert client.get(url).status_code == 403
    client.force_login(make_user("ops"))
    body = "\n".join(lines({"prompt": "<b>bold</b>?"}, {"prompt": "two"})).encode()
    ok = client.post(url, {"file": SimpleUploadedFile("p.jsonl", body)})
    assert ok.status_code == 200 and b"Imported 2 prompts" in ok.content
    bad = client.post(url, {"file": SimpleUploadedFile("p.jsonl", b'{"prompt": "x"}\n{"oops"\n')})
    assert bad.status_code == 400 and b"line 2" in bad.content
    assert Prompt.objects.filter(project=project).count() == 2


@pytest.mark.django_db
def test_demo_seed_adds_a_prompt_pool_and_gold_votes_once():
    from annotation.models import Preference
    from annotation.services.demo import PAIRS, PROMPT_POOL, demo_seed

    first = demo_seed(password="pw-demo-1234")
    assert first.prompts_created == len(PROMPT_POOL)
    assert first.preferences_created == sum(1 for p in PAIRS if p[5] in ("a", "b"))
    assert Preference.objects.filter(comparison__project=first.project, source="imported").count() == (
        first.preferences_created
    )
    second = demo_seed(password="pw-demo-1234")
    assert second.prompts_created == 0 and second.preferences_created == 0
