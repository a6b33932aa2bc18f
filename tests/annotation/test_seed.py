import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from django.test import Client

from annotation.models import Assignment, Comparison, Project, ProjectMember, Prompt, Response
from annotation.services.demo import PAIRS, demo_gold


def counts():
    return {
        "projects": Project.objects.count(),
        "prompts": Prompt.objects.count(),
        "responses": Response.objects.count(),
        "comparisons": Comparison.objects.filter(metadata__has_key="demo_id").count(),
        "gold_votes": Comparison.objects.exclude(metadata__has_key="demo_id").count(),
        "slots": Assignment.objects.filter(comparison__metadata__has_key="demo_id").count(),
        "users": User.objects.filter(is_active=True).count(),
        "memberships": User.groups.through.objects.count(),
        "project_members": sorted(ProjectMember.objects.values_list("project__slug", "user__username")),
        "passwords": sorted(User.objects.values_list("username", "password")),
    }


@pytest.mark.django_db
def test_seed_is_idempotent_and_prints_the_logins(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "s3cret-demo")
    monkeypatch.setenv("DEMO_ADMIN", "1")  # the superuser is opt-in
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    first = counts()
    project = Project.objects.get(slug="demo-helpful-harmless")
    assert project.name == "Demo: helpful and harmless" and project.overlap == 3
    assert project.guidelines.startswith("# ") and "## Safety flags" in project.guidelines
    gold = sum(1 for i, pair in enumerate(PAIRS) if demo_gold(i) and pair[5])  # pairs with an answer
    assert first["comparisons"] == len(PAIRS) >= 20 and first["slots"] == 3 * (len(PAIRS) - gold)
    assert Comparison.objects.exclude(gold_choice="").count() == gold > 0
    members = {u for slug, u in first["project_members"] if slug == project.slug}
    assert members == {"rater1", "rater2", "rater3", "researcher1", "ops1"}  # raters rate only their projects
    # The gold answers also go in once as imported votes (a round needs a reward model).
    assert first["gold_votes"] == sum(1 for *_, gold in PAIRS if gold in ("a", "b")) > 0
    assert first["projects"] == 1 and first["users"] == 6

    printed = out.getvalue()
    for username, role in [("rater1", "rater"), ("rater3", "rater"), ("researcher1", "researcher"),
                           ("ops1", "ops"), ("admin", "staff")]:  # fmt: skip
        assert any(
            username in line and role in line and "s3cret-demo" in line for line in printed.splitlines()
        )

    again = io.StringIO()
    call_command("seed_demo", stdout=again)
    assert counts() == first
    assert "Added 0 comparisons" in again.getvalue() and "none (all existed)" in again.getvalue()


@pytest.mark.django_db
def test_demo_content_is_varied():
    call_command("seed_demo", stdout=io.StringIO())
    comparisons = Comparison.objects.filter(metadata__has_key="demo_id").select_related(
        "prompt", "response_a", "response_b"
    )
    topics = {c.metadata["topic"] for c in comparisons}
    assert {"coding", "multi-turn", "safety", "factual"} <= topics
    assert any("```" in c.response_a.text for c in comparisons)
    assert any(len([m for m in c.prompt.messages if m["role"] == "user"]) > 1 for c in comparisons)
    assert all(c.response_a.text != c.response_b.text for c in comparisons)


@pytest.mark.django_db
def test_seeded_logins_work_with_their_roles():
    call_command("seed_demo", "--password", "pw-for-demo", "--with-admin", stdout=io.StringIO())
    project = Project.objects.get(slug="demo-helpful-harmless")
    expected = {
        # username: (/ops/, /admin/, API next)
        "rater1": (403, 302, 200),
        "researcher1": (403, 302, 403),
        "ops1": (200, 302, 403),
        "admin": (200, 200, 200),
    }
    for username, (ops, admin, rate) in expected.items():
        client = Client()
        assert client.login(request=HttpRequest(), username=username, password="pw-for-demo"), username
        assert client.get("/ops/").status_code == ops, username
        assert client.get("/admin/").status_code == admin, username
        assert client.post(f"/api/projects/{project.pk}/next/").status_code == rate, username
    assert not Client().login(request=HttpRequest(), username="rater1", password="demo-pass-123")


@pytest.mark.django_db
def test_the_demo_superuser_is_opt_in_and_the_password_must_pass_the_validators(monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN", raising=False)
    call_command("seed_demo", stdout=io.StringIO())
    assert not User.objects.filter(username="admin").exists()
    assert not User.objects.filter(is_superuser=True).exists()
    assert User.objects.filter(username="rater1").exists()
    for weak in ("password", "12345678", "rater1rater1"):
        with pytest.raises(CommandError, match="Demo password refused"):
            call_command("seed_demo", "--password", weak, stdout=io.StringIO())
