"""manage.py simulate_raters --project P --judge J --raters N --votes M [--only-evaluation] [--sync]

A judge (N accounts for simulated raters) rates the project's live queue through the same
lease / submit path as people. With --sync it runs in this process with a progress bar
(Ctrl-C cancels it); otherwise it is queued for a Celery worker (queue "gpu") and the command
prints the run's id.
"""

from django.core.management.base import CommandError
from tqdm import tqdm

from annotation.management.shared import ProjectCommand, service_errors
from training.services.judges import judge_run_cancel, judge_run_create, judge_run_execute


class Command(ProjectCommand):
    help = "Let a judge (or N simulated raters) rate a project's queue like people do."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--judge", required=True, help="Judge name.")
        parser.add_argument("--raters", type=int, default=1, help="Voter accounts (simulated raters only).")
        parser.add_argument("--votes", type=int, required=True, help="Stop after this many votes.")
        parser.add_argument("--only-evaluation", action="store_true", help="Vote on evaluation pairs only.")
        parser.add_argument("--sync", action="store_true", help="Run in this process with a progress bar.")

    def handle_project(self, target, *, judge, raters, votes, only_evaluation, sync, **options):
        with service_errors():
            run = judge_run_create(
                project=target,
                judge=judge,
                raters=raters,
                votes=votes,
                only_evaluation=only_evaluation,
                enqueue=not sync,
            )
        if not sync:
            self.stdout.write(f"Queued judge run {run.pk} ({judge} × {raters} on {target.slug}).")
            return
        bar = tqdm(total=votes, desc=f"judge run {run.pk}", unit="vote", dynamic_ncols=True, file=self.stderr)

        def listener(done, total):
            bar.n = done
            bar.refresh()

        try:
            run = judge_run_execute(run_id=run.pk, listener=listener)
        except KeyboardInterrupt:
            run = judge_run_cancel(run_id=run.pk)
            self.stderr.write(f"\nCancel requested; judge run {run.pk} is {run.status}.")
            return
        finally:
            bar.close()
        if run.status != "succeeded":
            raise CommandError(f"Judge run {run.pk} {run.status}: {run.error or 'no error recorded'}")
        m = run.metrics
        self.stdout.write(
            self.style.SUCCESS(
                f"Judge run {run.pk}: {m.get('votes', 0)} votes, {m.get('skipped', 0)} skipped, "
                f"in {m.get('seconds', 0)} s ({m.get('ended', '')})."
            )
        )
