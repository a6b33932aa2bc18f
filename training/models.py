"""Reward models, policy checkpoints and rounds (see the reward-model and rounds issues).

Tables only; the training job, promotion and scoring live in `training.services`.
"""

import math
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Project
from core.jobs import Job, JobStatus
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


# --- Online-RLHF rounds (issue 5) -------------------------------------------------------------


class PolicyCheckpoint(models.Model):
    """A policy folder on disk and where it came from.

    `kind` "base": the project's starting policy (settings.POLICY_BASE, else SmolLM2-135M-Instruct
    converted under MODELS_DIR); "dpo": written by one round's policy update from `parent`,
    with `reward_model` the reward model that labelled the round's pairs. `sha256` is the
    folder's `dir_sha256`, recorded once the folder was renamed into place. At most one
    checkpoint per project is `is_current` (the one the next round samples from).
    """

    class Kind(models.TextChoices):
        BASE = "base"
        DPO = "dpo"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="policy_checkpoints")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    round = models.OneToOneField(
        "RLHFRound", null=True, blank=True, on_delete=models.SET_NULL, related_name="checkpoint_created"
    )
    reward_model = models.ForeignKey(
        RewardModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="policies"
    )
    base_model = models.CharField(max_length=1000, help_text="The root base model folder of this lineage.")
    path = models.CharField(max_length=1000)
    sha256 = models.CharField(max_length=64)
    is_current = models.BooleanField(default=False)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_current=True), name="policy_one_current_per_project"
            ),
            models.UniqueConstraint(
                fields=["project", "sha256"], condition=Q(kind="base"), name="policy_base_unique_per_project"
            ),
            models.CheckConstraint(condition=Q(kind__in=["base", "dpo"]), name="policy_kind_valid"),
            models.CheckConstraint(condition=~Q(sha256=""), name="policy_has_sha256"),
            models.CheckConstraint(
                condition=Q(kind="base", parent__isnull=True) | Q(kind="dpo", parent__isnull=False),
                name="policy_parent_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"policy #{self.pk} ({self.kind}) of {self.project}"

    @property
    def label(self) -> str:
        return f"policy #{self.pk} ({self.kind}, {self.sha256[:10]})"


class RoundSettings(models.Model):
    """Per project: how rounds run (the defaults copied into each new round) and when they start.

    Schedule: `every_hours` or `cron` (five fields, minute hour day month weekday) drives a
    django-celery-beat PeriodicTask; `min_new_preferences` starts a round once that many A/B
    votes arrived after the active reward model's snapshot (checked by a periodic task).
    """

    class Strategy(models.TextChoices):
        NEW_VS_OLD = "new_vs_old", "New policy's best vs previous policy's best"
        UNCERTAIN = "uncertain", "Two new candidates with the smallest reward gap"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="round_settings")
    # Round config.
    prompts_per_round = models.PositiveIntegerField(default=16)
    n = models.PositiveSmallIntegerField(default=4, help_text="Candidates per prompt.")
    temperature = models.FloatField(default=0.8)
    top_p = models.FloatField(default=0.95)
    max_new_tokens = models.PositiveIntegerField(default=64)
    toxicity_threshold = models.FloatField(default=0.5, help_text="Block candidates above this toxicity.")
    toxicity_lambda = models.FloatField(default=10.0, help_text="λ in reward − λ·toxicity.")
    blocklist = models.TextField(blank=True, help_text="One word or phrase per line; /regex/ for a regex.")
    budget = models.PositiveIntegerField(
        default=16, help_text="Pairs published to the rating queue per round."
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.NEW_VS_OLD)
    priority = models.IntegerField(
        default=100, help_text="Queue priority of published pairs (+ the round number, so newer serve first)."
    )
    beta = models.FloatField(default=0.1)
    learning_rate = models.FloatField(default=1e-6)
    dpo_epochs = models.PositiveSmallIntegerField(default=1)
    dpo_batch_size = models.PositiveSmallIntegerField(default=4)
    dpo_max_steps = models.PositiveIntegerField(null=True, blank=True)
    reward_config = models.JSONField(
        default=dict, blank=True, help_text="Overrides for the reward-model run a round starts first."
    )
    # Schedule.
    enabled = models.BooleanField(default=False)
    every_hours = models.PositiveIntegerField(null=True, blank=True)
    cron = models.CharField(max_length=120, blank=True)
    min_new_preferences = models.PositiveIntegerField(null=True, blank=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "round settings"
        constraints = [
            models.CheckConstraint(condition=Q(n__gte=1), name="round_settings_n_gte_1"),
            models.CheckConstraint(condition=Q(toxicity_lambda__gte=0), name="round_settings_lambda_gte_0"),
            models.CheckConstraint(condition=Q(beta__gt=0), name="round_settings_beta_gt_0"),
        ]


class RLHFRound(Job):
    """One online-RLHF round: a resumable job of six steps, run by one Celery task on the job
    kernel (`core.jobs`).

    `status` is the kernel's (queued → running → succeeded / failed / cancelled); `step` is where
    the round is: reward → generating → filtering → scoring → updating → publishing (for a
    failed round, the step it failed in; a retry resumes there). "reward" retrains the reward
    model first when preferences arrived after the active one's snapshot. Each step commits its
    own results (keyed by unique rows) before the round moves on, so a killed worker resumes at
    the step it was in. `attempts` counts worker claims. At most one unfinished round per
    project, enforced by a partial unique index.
    """

    job_kind = "round"
    lock_namespace = LockNamespace.ROUND

    class Step(models.TextChoices):
        REWARD = "reward", "retraining reward model"
        GENERATING = "generating"
        FILTERING = "filtering"
        SCORING = "scoring"
        UPDATING = "updating"
        PUBLISHING = "publishing"

    STEPS = tuple(Step.values)

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULE = "schedule"
        PREFERENCES = "preferences"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rlhf_rounds")
    number = models.PositiveIntegerField()
    step = models.CharField(max_length=16, choices=Step.choices, blank=True)  # "" until first claimed
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    seed = models.BigIntegerField(default=0)
    config = models.JSONField(default=dict, blank=True)  # RoundSettings copied when the round was made
    policy_in = models.ForeignKey(
        PolicyCheckpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="rounds_sampled"
    )
    reference = models.ForeignKey(
        PolicyCheckpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy_out = models.ForeignKey(
        PolicyCheckpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reward_model = models.ForeignKey(
        RewardModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="rounds"
    )
    reward_run = models.ForeignKey(  # the reward-model run this round started, if any
        RewardModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    prompt_ids = models.JSONField(default=list, blank=True)  # sampled prompts, in sample order
    # {step: {"done", "total", "phase", "started_at", "finished_at", "seconds", "attempts"}}
    steps = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name = "round"
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="round_number_unique"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="round_one_running_per_project",
            ),
            models.CheckConstraint(
                condition=Q(
                    step__in=["", "reward", "generating", "filtering", "scoring", "updating", "publishing"]
                ),
                name="round_step_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} round {self.number} ({self.state})"

    @property
    def state(self) -> str:
        """One word for people and clients (read-only, from status and step): queued, the step
        it is running, done, failed or cancelled."""
        if self.status == JobStatus.RUNNING:
            return str(self.step or JobStatus.QUEUED)
        return "done" if self.status == JobStatus.SUCCEEDED else str(self.status)

    def get_state_display(self) -> str:
        state = self.state
        return str(self.Step(state).label) if state in self.STEPS else state.capitalize()

    @property
    def failed_step(self) -> str:
        """The step a failed round failed in ("" otherwise)."""
        return self.step if self.status == JobStatus.FAILED else ""

    def event_extra(self) -> dict:
        phase = (self.steps or {}).get(self.step, {}).get("phase", "") if self.step else ""
        return {
            "round_id": self.pk,
            "number": self.number,
            "state": self.state,
            "step": self.step,
            "phase": phase,
        }

    def claim_reset(self) -> dict:
        return {**super().claim_reset(), "step": self.step or self.STEPS[0]}


class RoundCandidate(models.Model):
    """One generated response of a round, with its safety verdict and scores.

    `generation` "old": sampled from the round's input policy (the round's candidates);
    "new": sampled from the round's new policy while publishing (for new-vs-old pairs).
    """

    class Generation(models.TextChoices):
        OLD = "old"
        NEW = "new"

    round = models.ForeignKey(RLHFRound, on_delete=models.CASCADE, related_name="candidates")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    generation = models.CharField(max_length=4, choices=Generation.choices, default=Generation.OLD)
    candidate_index = models.PositiveSmallIntegerField()
    response = models.OneToOneField("annotation.Response", on_delete=models.CASCADE, related_name="candidate")
    policy = models.ForeignKey(PolicyCheckpoint, on_delete=models.PROTECT, related_name="+")
    num_tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=8, blank=True)
    logprob_sum = models.FloatField(null=True, blank=True)
    ref_logprob_sum = models.FloatField(null=True, blank=True)
    toxicity = models.FloatField(null=True, blank=True)
    blocked = models.BooleanField(default=False)
    blocked_reason = models.CharField(max_length=300, blank=True)
    reward = models.FloatField(null=True, blank=True)
    shaped_reward = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round", "prompt", "generation", "candidate_index"], name="round_candidate_unique"
            ),
        ]
        indexes = [models.Index(fields=["round", "generation"], name="round_candidate_gen_idx")]


class RoundPair(models.Model):
    """The one pair a round published for a prompt (unique per round and prompt)."""

    round = models.ForeignKey(RLHFRound, on_delete=models.CASCADE, related_name="pairs")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    comparison = models.OneToOneField("annotation.Comparison", on_delete=models.CASCADE, related_name="+")
    strategy = models.CharField(max_length=16, choices=RoundSettings.Strategy.choices)
    candidate_a = models.ForeignKey(RoundCandidate, on_delete=models.CASCADE, related_name="+")
    candidate_b = models.ForeignKey(RoundCandidate, on_delete=models.CASCADE, related_name="+")
    reward_gap = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "prompt"], name="round_pair_unique_per_prompt"),
        ]
