"""manage.py policy_rollback --project P --checkpoint ID --reason "...": make an earlier policy
checkpoint of the project current (the next round samples from it), recorded as a rollback
event with who (--user, else nobody: the command line) and why."""

from annotation.management.shared import ProjectCommand, service_errors, user_from_option
from training.services.policies import policy_rollback


class Command(ProjectCommand):
    help = "Make an earlier policy checkpoint of a project current, with a reason."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--checkpoint", required=True, type=int, help="Policy checkpoint id.")
        parser.add_argument("--reason", required=True, help="Why (recorded with the event).")
        parser.add_argument("--user", default=None, help="Username recorded as who rolled back.")

    def handle_project(self, target, *, checkpoint: int, reason: str, user: str | None, **options):
        by = user_from_option(user)
        with service_errors():
            event = policy_rollback(project=target, checkpoint=checkpoint, by=by, reason=reason)
        previous = event.previous.label if event.previous else "none"
        self.stdout.write(f"{event.checkpoint.label} is now current (was {previous}); event #{event.pk}.")
