"""Reward-model runs (a job on the kernel) and the model each produces."""

import math
from pathlib import Path
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Project
from core.jobs import Job
from core.locks import LockNamespace


class RewardModel(Job):
    """One reward-model training run and, when it succeeds, the model it produced.

    A job of the kernel (`core.jobs`): status, progress, cancel flag, attempts, error and
    timings are the `Job` columns; `training.services.reward_models` runs it with `job_run`.

    Lineage: `snapshot_*` says exactly which preferences the run trained on (every preference of
    the project with id <= `snapshot_cutoff_id` whose choice the config uses, hashed over
    (id, choice, strength) in id order). `artefact_path` is only set once the model folder has
    been renamed into place, and `artefact_sha256` is the hash of that folder: a loader that finds
    a different hash refuses the folder.

    At most one row per project is active (`is_active`), enforced by a partial unique index.
    """

    job_kind: ClassVar[str] = "reward_run"
    lock_namespace: ClassVar[LockNamespace] = LockNamespace.REWARD_RUN
    requeue_task: ClassVar[str] = "training.tasks.train_reward_model_task"

    @classmethod
    def temp_roots(cls):
        models_dir = Path(settings.MODELS_DIR)  # <kind>/<project>/.tmp-<run id>-...
        return [(models_dir / "reward", 2), (models_dir / "safety", 2)]

    @classmethod
    def temp_owner(cls, path, final_name):
        return int(final_name) if final_name.isdigit() else None

    # Not a column: which trainer the job is in ("reward", then "safety"), for its events.
    phase = "reward"

    class SafetySource(models.TextChoices):
        PENDING = "", "—"
        LEARNED = "learned", "Learned from raters' flags"
        LEXICAL = "lexical", "Lexical prior (too few flags)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_models")
    version = models.PositiveIntegerField()
    backbone = models.CharField(max_length=1000)
    # Overrides chosen when queued; replaced by the full resolved RewardConfig when training starts.
    config = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # The preference snapshot the run trains on (fixed when queued, re-checked when it runs).
    snapshot_cutoff_id = models.BigIntegerField(default=0)
    snapshot_counts = models.JSONField(default=dict, blank=True)
    snapshot_sha256 = models.CharField(max_length=64, blank=True)

    # Progress besides the Job's counters, saved while training (throttled) and pushed to the
    # project's websocket group.
    progress_loss = models.FloatField(null=True, blank=True)
    progress_epoch = models.FloatField(null=True, blank=True)
    # [[step, loss], ...]: live while running, the trainer's own curve once it succeeds.
    loss_curve = models.JSONField(default=list, blank=True)

    # Results.
    metrics = models.JSONField(default=dict, blank=True)
    heldout_accuracy = models.FloatField(null=True, blank=True)
    heldout_loss = models.FloatField(null=True, blank=True)
    ece = models.FloatField(null=True, blank=True)
    train_pair_ids = models.JSONField(default=list, blank=True)
    test_pair_ids = models.JSONField(default=list, blank=True)
    artefact_path = models.CharField(max_length=1000, blank=True)
    artefact_sha256 = models.CharField(max_length=64, blank=True)
    safety_source = models.CharField(max_length=8, choices=SafetySource.choices, blank=True)
    safety_path = models.CharField(max_length=1000, blank=True)
    safety_sha256 = models.CharField(max_length=64, blank=True)
    safety_metrics = models.JSONField(default=dict, blank=True)

    # Promotion: how this row became (or did not become) the active model.
    promotion_note = models.TextField(blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    # The promotion gate's decision and the numbers behind it (training.ml.gates.reward_model_gate).
    gate = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="reward_model_version_unique"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="reward_model_one_active_per_project"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="reward_model_status_valid",
            ),
            # Only a finished model with a recorded artefact can be active.
            models.CheckConstraint(
                condition=Q(is_active=False) | (Q(status="succeeded") & ~Q(artefact_sha256="")),
                name="reward_model_active_is_succeeded",
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | (~Q(artefact_path="") & ~Q(artefact_sha256="")),
                name="reward_model_succeeded_has_artefact",
            ),
        ]
        indexes = [models.Index(fields=["project", "status"], name="reward_model_project_status")]

    def __str__(self) -> str:
        return f"{self.project} reward model v{self.version} ({self.status})"

    @property
    def progress_step(self) -> int:
        """The trainer's step: the Job's `progress_done` under the name the API and the
        command line have always used."""
        return self.progress_done

    @progress_step.setter
    def progress_step(self, value: int) -> None:
        self.progress_done = value

    def event_extra(self) -> dict:
        loss = self.progress_loss
        return {
            "version": self.version,
            "phase": self.phase,
            "loss": loss if loss is not None and math.isfinite(loss) else None,
            "active": self.is_active,
        }

    def claim_reset(self) -> dict:
        # A run found "running" crashed in an earlier attempt: it restarts from scratch.
        return {
            "progress_done": 0,
            "progress_total": 0,
            "progress_loss": None,
            "progress_epoch": None,
            "loss_curve": [],
        }
