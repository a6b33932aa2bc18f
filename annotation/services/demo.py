"""The demo seed: one project with pairs written for the demo, and a login for each role.

`demo_seed` is idempotent: the project is found by slug, a pair by its `demo_id` in the
comparison metadata, a user by username; a second run creates and changes nothing.

The content (guidelines, pairs, prompt pool) is in annotation.demo_data, re-exported here.
For RLHF rounds the demo also gets a prompt pool (`PROMPT_POOL`, imported like
`manage.py import_prompts`) and, as imported votes, the gold answers of its own pairs
(`demo_preferences_seed`: chosen = the gold reply): a round needs a reward model, and these
votes let the first round train one, so a new user can start a round from the ops page at
once and watch its candidates reach the rating page.
"""

import json
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.demo_data import GUIDELINES, PAIRS, PROMPT_POOL
from annotation.models import Comparison, Project
from annotation.services.comparisons import ComparisonSpec, comparisons_create
from annotation.services.members import project_members_add_all
from annotation.services.preference_imports import preferences_import
from annotation.services.projects import project_create
from annotation.services.prompt_imports import prompts_import
from core.errors import ServiceError

__all__ = [
    "DEFAULT_PASSWORD",
    "DEMO_NAME",
    "DEMO_SLUG",
    "DEMO_USERS",
    "GUIDELINES",
    "PAIRS",
    "PROMPT_POOL",
    "DemoLogin",
    "DemoSeedResult",
    "demo_preferences_seed",
    "demo_prompts_seed",
    "demo_seed",
]

DEMO_SLUG = "demo-helpful-harmless"
DEMO_NAME = "Demo: helpful and harmless"
DEFAULT_PASSWORD = "demo-pass-123"


def demo_prompts_seed(*, project: Project) -> int:
    """Add the demo prompt pool (duplicates skipped by content hash); returns prompts added."""
    lines = [json.dumps({"prompt": text, "metadata": {"demo_pool": True}}) for text in PROMPT_POOL]
    return prompts_import(project=project, lines=lines).imported


def demo_preferences_seed(*, project: Project) -> int:
    """Import each gold-labelled demo pair once as a vote (chosen = gold); returns votes added."""
    lines = []
    for _demo_id, _topic, messages, a, b, gold in PAIRS:
        if gold in ("a", "b"):
            chosen, rejected = (a, b) if gold == "a" else (b, a)
            lines.append(json.dumps({"prompt": messages, "chosen": chosen, "rejected": rejected}))
    return preferences_import(project=project, lines=lines, fmt="trl", source_name="demo gold").imported


@dataclass
class DemoLogin:
    username: str
    role: str
    password: str
    created: bool


@dataclass
class DemoSeedResult:
    project: Project
    project_created: bool
    comparisons_created: int
    logins: list[DemoLogin] = field(default_factory=list)
    prompts_created: int = 0
    preferences_created: int = 0


DEMO_USERS = [
    ("rater1", "rater"),
    ("rater2", "rater"),
    ("rater3", "rater"),
    ("researcher1", "researcher"),
    ("ops1", "ops"),
    ("admin", "staff"),
]


def _user_ensure(*, username: str, role: str, password: str) -> DemoLogin:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    changed = created
    if not user.check_password(password):
        user.set_password(password)
        changed = True
    if role == "staff" and not (user.is_staff and user.is_superuser):
        user.is_staff = user.is_superuser = True
        changed = True
    if changed:
        user.save()
    if role != "staff" and not user.groups.filter(name=role).exists():
        user.groups.add(Group.objects.get(name=role))
    return DemoLogin(username=username, role=role, password=password, created=created)


def demo_gold(index: int) -> bool:
    """Every fourth demo pair is a gold pair (mixed into raters' streams to check them, with no
    slots of its own); the others are ordinary pairs. All gold answers still seed the votes."""
    return index % 4 == 3


@transaction.atomic
def demo_seed(*, password: str = DEFAULT_PASSWORD, with_admin: bool = False) -> DemoSeedResult:
    """Create the demo project, its pairs and the demo users; a second run changes nothing.
    The superuser `admin` only when asked (`with_admin`): a published password on a superuser
    is the first thing anyone tries. The password must pass AUTH_PASSWORD_VALIDATORS for every
    demo user (ServiceError otherwise)."""
    users = [(u, r) for u, r in DEMO_USERS if with_admin or r != "staff"]
    user_model = get_user_model()
    for username, _ in users:
        try:
            validate_password(password, user_model(username=username))
        except ValidationError as exc:
            raise ServiceError(f"Demo password refused for {username}: {' '.join(exc.messages)}") from exc
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    project_created = project is None
    if project is None:
        project = project_create(
            name=DEMO_NAME, slug=DEMO_SLUG, guidelines=GUIDELINES, overlap=3, lease_seconds=300
        )
    present = set(
        Comparison.objects.filter(project=project, metadata__has_key="demo_id").values_list(
            "metadata__demo_id", flat=True
        )
    )
    specs = [
        ComparisonSpec(
            messages=messages,
            response_a=a,
            response_b=b,
            metadata={"demo_id": demo_id, "topic": topic},
            gold_choice=gold if demo_gold(index) else "",
        )
        for index, (demo_id, topic, messages, a, b, gold) in enumerate(PAIRS)
        if demo_id not in present
    ]
    created = comparisons_create(project=project, specs=specs) if specs else []
    logins = [_user_ensure(username=u, role=r, password=password) for u, r in users]
    # The demo raters and researcher are members of the demo project (ops see every project).
    members = get_user_model().objects.filter(username__in=[u for u, r in users if r != "staff"])
    project_members_add_all(project=project, users=members)
    return DemoSeedResult(
        project=project,
        project_created=project_created,
        comparisons_created=len(created),
        logins=logins,
        prompts_created=demo_prompts_seed(project=project),
        preferences_created=demo_preferences_seed(project=project),
    )
