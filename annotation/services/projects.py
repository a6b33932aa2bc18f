"""Writes on projects: create and edit (the ops pages and the demo seed call these)."""

from django.db import transaction

from annotation.models import Project

# Rater quality (annotation.quality): gold rate, reading-time model, trust thresholds, floor.
QUALITY_FIELDS = (
    "gold_every", "reading_cps", "too_fast_fraction", "trust_review", "trust_pause", "quality_min_votes",
    "vote_floor_ms",
)  # fmt: skip
EDITABLE_FIELDS = ("name", "slug", "guidelines", "overlap", "lease_seconds", *QUALITY_FIELDS)


@transaction.atomic
def project_create(
    *, name: str, slug: str, guidelines: str = "", overlap: int = 3, lease_seconds: int = 300, **quality
) -> Project:
    """A new project; `quality` may set any of QUALITY_FIELDS (else the model's defaults)."""
    unknown = set(quality) - set(QUALITY_FIELDS)
    if unknown:
        raise TypeError(f"project_create() has no setting {', '.join(sorted(unknown))}")
    project = Project(
        name=name, slug=slug, guidelines=guidelines, overlap=overlap, lease_seconds=lease_seconds, **quality
    )
    project.full_clean()
    project.save()
    return project


@transaction.atomic
def project_update(*, project: Project, **changes) -> Project:
    """Change name, slug, guidelines, overlap or lease length.

    A new overlap applies to comparisons created from now on: existing comparisons keep the
    assignments they were created with. A new lease length applies to the next leases.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"project_update() cannot change {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(project, name, value)
    if changes:
        project.full_clean()
        project.save(update_fields=list(changes))
    return project
