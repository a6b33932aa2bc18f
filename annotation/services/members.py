"""Project membership: ops assign raters and researchers to projects (pages, API, admin and the
demo seed call these). Raters and researchers see, rate and hear only their projects; ops and
superusers see every project (annotation.selectors.projects_for)."""

from django.contrib.auth import get_user_model
from django.db import transaction

from annotation.models import Assignment, Project, ProjectMember
from annotation.services.queue import _lock_rater
from core.errors import ErrorCode, NotFound, ServiceError
from core.events import access_revoked_on_commit
from core.permissions import role_perms


def member_user(*, ref: str | int):
    """The user with this username (or, a whole number, this id); NotFound otherwise."""
    User = get_user_model()
    ref = str(ref).strip()
    user = User.objects.filter(username=ref).first()
    if user is None and ref.isdigit():
        user = User.objects.filter(pk=int(ref)).first()
    if user is None:
        raise NotFound(f"No user {ref!r}.", code=ErrorCode.NOT_FOUND)
    return user


@transaction.atomic
def project_member_add(*, project: Project, user, by=None) -> ProjectMember:
    """Make `user` a member of `project` (idempotent: an existing membership is returned). Only a
    user with a role can be a member: membership narrows a role to projects, it grants none."""
    if not role_perms(user):
        raise ServiceError(
            f"{user.get_username()} has no role (rater, researcher or ops): give them one first.",
            code=ErrorCode.INVALID,
        )
    member, _ = ProjectMember.objects.get_or_create(project=project, user=user, defaults={"added_by": by})
    return member


def project_members_add_all(*, project: Project, users) -> None:
    """Make each of `users` a member of `project`, whatever their role (the seed, judges' voters)."""
    ProjectMember.objects.bulk_create(
        [ProjectMember(project=project, user=u) for u in users], ignore_conflicts=True
    )


@transaction.atomic
def project_member_remove(*, project: Project, user) -> bool:
    """End `user`'s membership of `project`; False if they were not a member.

    The pairs they hold there go back to the queue, so a vote on one is refused (no lease). The
    rater lock (the one `assignment_next` takes first) orders this with their queue calls: a
    `next` either ran before and its lease is released here, or runs after and finds no
    membership. Sockets the user opened on the project while a member are closed (4403) once
    this commits."""
    _lock_rater(user.pk)
    deleted, _ = ProjectMember.objects.filter(project=project, user=user).delete()
    Assignment.objects.filter(project=project, rater=user, state=Assignment.State.LEASED).update(
        state=Assignment.State.OPEN, rater=None, leased_at=None, expires_at=None
    )
    if deleted:
        access_revoked_on_commit(user_id=user.pk, project_id=project.pk)  # its open sockets close
    return bool(deleted)
