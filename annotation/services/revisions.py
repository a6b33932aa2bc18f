"""Changing a vote: a rater may change their own vote for PREFERENCE_REVISE_SECONDS after
casting it; what it was is kept as a PreferenceRevision (never a second vote)."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotation.models import Preference, PreferenceRevision
from annotation.services.queue import _vote_values
from core.errors import ErrorCode, NotFound, ServiceError


def revise_window_text(seconds: int) -> str:
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"


@transaction.atomic
def preference_revise(
    *,
    rater: AbstractBaseUser,
    preference_id: int,
    choice: str,
    strength: int | None = None,
    rationale: str = "",
    unsafe_a: bool = False,
    unsafe_a_category: str = "",
    unsafe_b: bool = False,
    unsafe_b_category: str = "",
) -> Preference:
    """Change one of the rater's own votes within PREFERENCE_REVISE_SECONDS of casting it.

    The vote is changed in place (still one vote per rater and pair; the pair's count does not
    move) and what it was is kept as a PreferenceRevision. The window runs from when the vote was
    cast, so changing it again does not extend it. Raises NotFound for a vote that is not the
    rater's own, and REVISE_WINDOW (409) once the window has passed.
    """
    values = _vote_values(
        choice=choice,
        strength=strength,
        rationale=rationale,
        unsafe={"a": (unsafe_a, unsafe_a_category), "b": (unsafe_b, unsafe_b_category)},
    )
    vote = (
        Preference.objects.select_for_update()
        .filter(pk=preference_id, rater=rater, source=Preference.Source.RATER)
        .first()
    )
    if vote is None:
        raise NotFound("You have no such vote.", code=ErrorCode.NOT_FOUND)
    window = settings.PREFERENCE_REVISE_SECONDS
    now = timezone.now()
    if now - vote.created_at > timedelta(seconds=window):
        raise ServiceError(
            f"A vote can be changed for {revise_window_text(window)} after it is cast; "
            "the time to change this one has passed.",
            code=ErrorCode.REVISE_WINDOW,
        )
    PreferenceRevision.objects.create(
        preference=vote, revised_at=now, **{f: getattr(vote, f) for f in PreferenceRevision.VOTE_FIELDS}
    )
    for field, value in values.items():
        setattr(vote, field, value)
    vote.save(update_fields=[*values, "updated_at"])
    return vote
