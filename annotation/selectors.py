"""Reads: querysets and aggregates for views, the API and exports."""

from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, Comparison, Preference, Project


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


def preferences_of(*, rater, project_id: int | None = None):
    """The rater's own votes (the API never lists anyone else's)."""
    votes = Preference.objects.filter(rater=rater)
    if project_id is not None:
        votes = votes.filter(comparison__project_id=project_id)
    return votes


def _count_per_project(queryset, project_field: str = "project"):
    """A correlated COUNT(*) subquery of `queryset` rows belonging to the outer project."""
    rows = queryset.filter(**{project_field: OuterRef("pk")}).order_by().values(project_field)
    return Coalesce(Subquery(rows.annotate(n=Count("*")).values("n"), output_field=IntegerField()), 0)


def projects_with_counts():
    """Projects with their queue counts for the ops overview (one query, no N+1)."""
    return Project.objects.order_by("name").annotate(
        comparisons_total=_count_per_project(Comparison.objects.all()),
        comparisons_done=_count_per_project(Comparison.objects.filter(votes_count__gte=F("votes_needed"))),
        votes_total=_count_per_project(Preference.objects.all(), "comparison__project"),
        slots_leased=_count_per_project(
            Assignment.objects.filter(state=Assignment.State.LEASED, expires_at__gt=timezone.now())
        ),
    )
