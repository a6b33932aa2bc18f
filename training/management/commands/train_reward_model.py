"""manage.py train_reward_model --project P [--sync] [settings]: train with a console progress bar.

Without --sync the run is queued for a Celery worker (queue "gpu") and the command follows its
row with a progress bar; with --sync (the default when no worker answers) it trains in this
process. Ctrl-C cancels the run either way.
"""

import time

from django.conf import settings
from django.core.management.base import CommandError
from tqdm import tqdm

from annotation.management.shared import ProjectCommand, service_errors
from training.models import RewardModel
from training.services.reward_models import (
    MODE_OVERRIDES,
    reward_model_cancel,
    reward_model_run_create,
    reward_model_train,
)

POLL_S = 0.5
OPTIONS = {  # option -> (config key, type)
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "max_length": int,
    "heldout_fraction": float,
    "max_steps": int,
    "time_limit_s": float,
    "seed": int,
    "threads": int,
    "min_trust": float,
}
MODE_HELP = {  # the help of the run's modes (MODE_OVERRIDES: option -> choices) that need one
    "pooling": "Scoring head: the model's own, a mean-pooled one, or auto (the default).",
    "vote_weights": "trust: weight each person's vote in the loss by their rater's trust.",
    "gold": "Votes on gold pairs: left out (the default, as in exports) or trained on.",
}


def worker_available(timeout: float = 1.0) -> bool:
    """True when a Celery worker consumes the training queue (False on any doubt)."""
    try:
        from config.celery import app

        queue = next(iter(settings.CELERY_TASK_ROUTES.values()))["queue"]
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # no broadcast support (filesystem broker), broker down, ...
        return False
    return any(q.get("name") == queue for queues in replies.values() for q in queues)


class Command(ProjectCommand):
    help = "Train a reward model on a project's preferences, with a console progress bar."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--sync", action="store_true", default=None, help="Train in this process.")
        mode.add_argument("--worker", action="store_true", help="Queue for a Celery worker and follow it.")
        parser.add_argument("--no-wait", action="store_true", help="With --worker: queue and return.")
        parser.add_argument(
            "--backbone", default=None, help="Model folder (default: REWARD_BACKBONE / MiniLM)."
        )
        for name, kind in OPTIONS.items():
            parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, dest=name)
        for name, choices in MODE_OVERRIDES.items():
            flag = "--" + name.replace("_", "-")
            parser.add_argument(flag, choices=choices, default=None, dest=name, help=MODE_HELP.get(name))

    def handle_project(self, target, *, sync, worker: bool, no_wait: bool, backbone, **options):
        overrides = {k: options[k] for k in (*OPTIONS, *MODE_OVERRIDES) if options.get(k) is not None}
        if not worker and not sync:
            sync = not worker_available()
            if sync:
                self.stderr.write("No Celery worker answers on the training queue: training in this process.")
        with service_errors():
            run = reward_model_run_create(
                project=target, config_overrides=overrides, backbone=backbone, enqueue=not sync
            )
        self.stdout.write(
            f"Reward model v{run.version} of {target.slug}: {run.snapshot_counts.get('total', 0)} votes "
            f"(preferences <= #{run.snapshot_cutoff_id}, snapshot {run.snapshot_sha256[:12]})."
        )
        if not sync and no_wait:
            self.stdout.write(f"Queued as run {run.pk}.")
            return
        try:
            run = self._train_here(run) if sync else self._follow(run)
        except KeyboardInterrupt:
            run = reward_model_cancel(run_id=run.pk)
            self.stderr.write(f"\nCancel requested; run {run.pk} is {run.status}.")
            return
        self._report(run)

    def _bar(self, desc: str):
        return tqdm(total=0, desc=desc, unit="step", dynamic_ncols=True, file=self.stderr)

    def _train_here(self, run: RewardModel) -> RewardModel:
        bars: dict[str, tqdm] = {}

        def on_progress(phase, p):
            bar = bars.get(phase)
            if bar is None:
                bar = bars[phase] = self._bar(f"{phase} v{run.version}")
            bar.total = p.total_steps
            bar.n = p.step
            if p.loss == p.loss:  # not nan
                bar.set_postfix(loss=f"{p.loss:.4f}", epoch=f"{p.epoch:.2f}", refresh=False)
            bar.refresh()

        try:
            return reward_model_train(run_id=run.pk, on_progress=on_progress)
        finally:
            for bar in bars.values():
                bar.close()

    def _follow(self, run: RewardModel) -> RewardModel:
        self.stderr.write(f"Queued as run {run.pk}; waiting for a worker (Ctrl-C cancels the run).")
        bar = self._bar(f"reward v{run.version}")
        try:
            while True:
                run.refresh_from_db()
                if run.progress_total:
                    bar.total = run.progress_total
                    bar.n = run.progress_done
                    if run.progress_loss is not None:
                        bar.set_postfix(loss=f"{run.progress_loss:.4f}", refresh=False)
                bar.set_description(f"reward v{run.version} {run.status}", refresh=False)
                bar.refresh()
                if run.is_finished:
                    return run
                time.sleep(POLL_S)
        finally:
            bar.close()

    def _report(self, run: RewardModel) -> None:
        if run.status != RewardModel.Status.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.status}: {run.error or 'no error recorded'}")
        m = run.metrics
        acc = "n/a" if run.heldout_accuracy is None else f"{run.heldout_accuracy:.3f}"
        self.stdout.write(
            self.style.SUCCESS(
                f"v{run.version} succeeded: held-out accuracy {acc} on {m.get('test_pairs')} pairs, "
                f"{m.get('train_pairs')} train pairs in {m.get('train_seconds')} s."
            )
        )
        self.stdout.write(f"Model: {run.artefact_path} (sha256 {run.artefact_sha256})")
        self.stdout.write(f"Safety: {run.get_safety_source_display()}")
        self.stdout.write(run.promotion_note)
