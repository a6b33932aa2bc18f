"""Reads: querysets and aggregates for views, the API and exports."""

from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from annotation.models import Comparison, Preference, Project


@dataclass(frozen=True)
class Progress:
    rated_today: int
    team_rated_today: int
    remaining: int
    total: int


def _start_of_today():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def progress_for(*, rater, project: Project) -> Progress:
    today = _start_of_today()
    votes = Preference.objects.filter(comparison__project=project, created_at__gte=today)
    comparisons = Comparison.objects.filter(project=project)
    return Progress(
        rated_today=votes.filter(rater=rater).count(),
        team_rated_today=votes.count(),
        remaining=comparisons.filter(votes_count__lt=F("votes_needed")).count(),
        total=comparisons.count(),
    )


def projects_for(*, user):
    return Project.objects.order_by("name")
