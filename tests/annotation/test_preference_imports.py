import gzip
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.formats import split_hh_pair
from annotation.models import Assignment, Comparison, Preference, Prompt, Response
from annotation.services.preference_imports import (
    PreferenceImportInvalid,
    parse_preference_lines,
    preferences_import,
)
from tests.paths import HH_FILE

HH_LINES = 2312


def hh_lines(n: int) -> list[str]:
    out = []
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(line)
            if len(out) == n:
                break
    return out


def write(tmp_path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.django_db
def test_hh_lines_become_complete_comparisons_with_one_imported_vote_each(make_project, tmp_path):
    project = make_project(overlap=3)
    lines = hh_lines(5)
    path = write(tmp_path, "hh.jsonl", lines)
    call_command("import_preferences", str(path), project=project.slug, fmt="hh")

    comparisons = list(
        Comparison.objects.filter(project=project).select_related("response_a", "response_b", "prompt")
    )
    assert len(comparisons) == 5
    for line, c in zip(lines, sorted(comparisons, key=lambda c: c.metadata["imported"]["line"]), strict=True):
        raw = json.loads(line)
        messages, chosen, rejected = split_hh_pair(raw["chosen"], raw["rejected"])
        assert c.prompt.messages == messages
        assert (c.response_a.text, c.response_b.text) == (chosen, rejected)
        assert c.response_a.source == Response.Source.IMPORTED
        assert (c.votes_needed, c.votes_count) == (1, 1)
        vote = Preference.objects.get(comparison=c)
        assert (vote.choice, vote.strength, vote.shown_left, vote.source) == ("a", 2, None, "imported")
        assert vote.rater.username == f"import-hh-p{project.pk}"
        assert not vote.rater.is_active and not vote.rater.has_usable_password()
        assert not vote.rater.groups.exists()
        slot = Assignment.objects.get(comparison=c)
        assert (slot.state, slot.rater_id) == ("done", vote.rater_id)
    # Nothing lands in the rating queue by default.
    assert not Assignment.objects.filter(project=project).exclude(state="done").exists()


@pytest.mark.django_db
def test_bad_lines_are_reported_by_number_and_nothing_is_written(make_project, tmp_path):
    project = make_project()
    good = hh_lines(3)
    lines = [
        good[0],
        "{not json\n",
        good[1],
        json.dumps({"chosen": "no transcript here", "rejected": "nor here"}),
        json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: a"}),
        "\n",  # blank lines are ignored, not errors
        json.dumps(["a", "list"]),
        good[2],
    ]
    path = write(tmp_path, "bad.jsonl", lines)
    with pytest.raises(CommandError, match=r"4 bad line\(s\) of 7; nothing was imported"):
        call_command("import_preferences", str(path), project=project.slug, fmt="hh")
    assert not Comparison.objects.exists() and not Preference.objects.exists() and not Prompt.objects.exists()

    with pytest.raises(PreferenceImportInvalid) as info:
        preferences_import(project=project, lines=lines, fmt="hh")
    assert [e.line for e in info.value.errors] == [2, 4, 5, 7]
    assert "not valid JSON" in info.value.errors[0].message
    assert "missing 'rejected'" in info.value.errors[2].message
    assert not Comparison.objects.exists()


def test_trl_strings_message_lists_and_implicit_prompt_parse_to_the_same_shape():
    user = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    lines = [
        json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}),
        json.dumps(
            {
                "prompt": user,
                "chosen": [{"role": "assistant", "content": "4"}],
                "rejected": [{"role": "assistant", "content": "22"}],
            }
        ),
        json.dumps(
            {
                "chosen": user + [{"role": "assistant", "content": "Four"}],
                "rejected": user + [{"role": "assistant", "content": "Five"}],
            }
        ),
        json.dumps({"prompt": "x", "chosen": [{"role": "user", "content": "4"}], "rejected": "5"}),
        json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"}),
        json.dumps({"chosen": "4", "rejected": "5"}),
        json.dumps({"prompt": [{"role": "wizard", "content": "x"}], "chosen": "4", "rejected": "5"}),
    ]
    pairs, errors, count = parse_preference_lines(lines, "trl")
    assert count == 7
    assert [(p.messages, p.chosen, p.rejected) for p in pairs] == [
        ([{"role": "user", "content": "2+2?"}], "4", "5"),
        (user, "4", "22"),
        (user, "Four", "Five"),
    ]
    assert [e.line for e in errors] == [4, 5, 6, 7]
    assert "assistant" in errors[0].message and "same" in errors[1].message
    assert "prompt" in errors[2].message and "wizard" in errors[3].message


@pytest.mark.django_db
def test_trl_import_and_reimport_is_deduplicated_and_reported(make_project, tmp_path, capsys):
    project = make_project(overlap=2)
    lines = [
        json.dumps({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}),
        json.dumps(
            {
                "prompt": [{"role": "user", "content": "Say hi"}],
                "chosen": [{"role": "assistant", "content": "Hi!"}],
                "rejected": [{"role": "assistant", "content": "No."}],
            }
        ),
        # The first pair again, spelled differently: same content, so a duplicate.
        json.dumps(
            {
                "prompt": [{"role": "user", "content": "Capital of France?"}],
                "rejected": "Lyon.",
                "chosen": "Paris.",
            }
        ),
    ]
    path = write(tmp_path, "trl.jsonl", lines)
    report = preferences_import(project=project, lines=path.read_text().splitlines(), fmt="trl", queue=True)
    assert report.imported == 2 and report.duplicates == [(3, "same pair as line 1")]
    c = Comparison.objects.get(project=project, response_a__text="Paris.")
    # --queue: the imported vote plus the project's k open slots for raters.
    assert (c.votes_needed, c.votes_count) == (3, 1)
    assert sorted(Assignment.objects.filter(comparison=c).values_list("state", flat=True)) == [
        "done",
        "open",
        "open",
    ]

    # Re-import (the same pairs, one new): only the new line is written.
    lines.append(json.dumps({"prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "Milan."}))
    path = write(tmp_path, "trl2.jsonl", lines)
    call_command("import_preferences", str(path), project=project.slug, fmt="trl")
    out = capsys.readouterr().out
    assert "line 1: skipped, already imported" in out and "line 2: skipped, already imported" in out
    assert "Imported 1 preferences" in out
    assert Preference.objects.filter(comparison__project=project).count() == 3

    # Another project is independent: the same file imports fully there.
    other = make_project()
    assert preferences_import(project=other, lines=lines, fmt="trl").imported == 3


@pytest.mark.django_db
def test_the_full_shared_hh_file_imports_gzipped(make_project):
    project = make_project()
    call_command("import_preferences", str(HH_FILE), project=project.slug, fmt="hh")
    assert Comparison.objects.filter(project=project).count() == HH_LINES
    assert (
        Preference.objects.filter(comparison__project=project, source="imported", choice="a").count()
        == HH_LINES
    )
    assert Prompt.objects.filter(project=project).count() <= HH_LINES
    # Importing the same file again writes nothing.
    report = preferences_import(project=project, lines=gzip.open(HH_FILE, "rb"), fmt="hh")
    assert report.imported == 0 and len(report.duplicates) == HH_LINES
    assert Comparison.objects.filter(project=project).count() == HH_LINES
