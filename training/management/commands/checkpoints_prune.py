"""manage.py checkpoints_prune [--project P] [--dry-run]: delete the folders of policy
checkpoints that retention does not keep (the current one, the base, the last N of the
project's round settings, any in an evaluation, any a round uses or awaits evaluation on); the
rows stay, marked pruned. Every project with round checkpoints when --project is not given."""

from django.core.management.base import BaseCommand

from annotation.management.shared import project_from_option
from training.services.policies import checkpoints_prune, checkpoints_prune_all


class Command(BaseCommand):
    help = "Delete the folders of policy checkpoints that retention does not keep (rows stay, marked pruned)."

    def add_arguments(self, parser):
        parser.add_argument("--project", default=None, help="Project slug (or id); all projects when absent.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be deleted; delete nothing."
        )

    def handle(self, *args, project: str | None, dry_run: bool, **options):
        if project:
            reports = [checkpoints_prune(project=project_from_option(project), dry_run=dry_run)]
        else:
            reports = checkpoints_prune_all(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for report in reports:
            ids = ", ".join(f"#{c.pk}" for c in report.pruned) or "nothing"
            self.stdout.write(
                f"{report.project.slug}: {verb} {ids} ({report.freed_bytes / 1e6:.1f} MB; "
                f"keeps the last {report.keep_last}){' [dry run]' if dry_run else ''}."
            )
