"""manage.py policy_rollback --project P --checkpoint ID --reason "...": make an earlier policy
checkpoint of the project current (the next round samples from it), recorded as a rollback
event with who (--user, else nobody: the command line) and why."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.management.shared import project_from_option
from core.errors import ServiceError
from training.services.policies import policy_rollback


class Command(BaseCommand):
    help = "Make an earlier policy checkpoint of a project current, with a reason."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug (or id).")
        parser.add_argument("--checkpoint", required=True, type=int, help="Policy checkpoint id.")
        parser.add_argument("--reason", required=True, help="Why (recorded with the event).")
        parser.add_argument("--user", default=None, help="Username recorded as who rolled back.")

    def handle(self, *args, project: str, checkpoint: int, reason: str, user: str | None, **options):
        target = project_from_option(project)
        by = None
        if user:
            by = get_user_model().objects.filter(username=user).first()
            if by is None:
                raise CommandError(f"No user {user!r}.")
        try:
            event = policy_rollback(project=target, checkpoint=checkpoint, by=by, reason=reason)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        previous = event.previous.label if event.previous else "none"
        self.stdout.write(f"{event.checkpoint.label} is now current (was {previous}); event #{event.pk}.")
