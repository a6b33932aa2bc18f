"""Reads for the judges page and API: judges, a project's judge runs, a judge's voter accounts."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from annotation.models import Project
from training.models import Judge, JudgeRun


def judges_all() -> QuerySet[Judge]:
    return Judge.objects.select_related("base", "reward_model", "user").order_by("name")


def judge_runs_for(*, project: Project) -> QuerySet[JudgeRun]:
    return JudgeRun.objects.filter(project=project).select_related("judge", "requested_by").order_by("-pk")


def judge_voter_ids(*, judge: Judge) -> list[int]:
    """Every account that votes for `judge`: its own and its simulated raters' (`judge-<name>-r<i>`;
    a judge's name never ends in -r<number>, so these names are its own)."""
    users = get_user_model().objects.filter(
        Q(pk=judge.user_id) | Q(username__regex=rf"^judge-{re.escape(judge.name)}-r[0-9]+$")
    )
    return list(users.order_by("pk").values_list("pk", flat=True))
