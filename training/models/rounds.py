"""Online-RLHF rounds: settings, the round job, its candidates and published pairs."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from annotation.models import Project
from core.jobs import Job, JobStatus
from core.locks import LockNamespace
from training.models.policy import PolicyCheckpoint
from training.models.reward import RewardModel

EVERY_HOURS_MIN, EVERY_HOURS_MAX = 1 / 60, 8760.0  # one minute .. one year


def every_hours_valid(value: float) -> None:
    """A schedule's period: a finite number of hours, one minute to one year."""
    if not (EVERY_HOURS_MIN <= value <= EVERY_HOURS_MAX):  # also refuses NaN
        raise ValidationError(
            f"Give a number of hours between {EVERY_HOURS_MIN:.4f} (one minute) and {EVERY_HOURS_MAX:g} (a year)."
        )


class RoundSettings(models.Model):
    """Per project: how rounds run (the defaults copied into each new round) and when they start.

    Schedule: `every_hours` or `cron` (five fields, minute hour day month weekday) drives a
    django-celery-beat PeriodicTask; `min_new_preferences` starts a round once that many A/B
    votes arrived after the newest snapshot a reward model was trained on, promoted or not
    (checked by a periodic task).
    """

    class PolicyGate(models.TextChoices):
        JUDGE_LOWER_BOUND = "judge_lower_bound", "Judge: win-rate lower bound vs parent ≥ threshold"
        HUMAN_VOTES = "human_votes", "Humans: enough evaluation votes and win rate ≥ threshold"
        ALWAYS = "always", "Always (no evaluation: every round's checkpoint becomes current)"

    class Strategy(models.TextChoices):
        NEW_VS_OLD = "new_vs_old", "New policy's best vs previous policy's best"
        UNCERTAIN = "uncertain", "The pair the reward model is least sure of (ε-greedy exploration)"
        ENSEMBLE = "ensemble", "The pair the reward model's head ensemble disagrees about most (ε-greedy)"
        RANDOM = "random", "A random pair (baseline)"

    class UpdateMethod(models.TextChoices):
        FULL = "full", "Full fine-tune (AdamW's state carried to the next update of the checkpoint)"
        LORA = "lora", "LoRA adapter (peft), merged into the saved weights"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="round_settings")
    # Round config.
    prompts_per_round = models.PositiveIntegerField(default=32)
    # Called `n` before release 0003 (the API still takes `n` as an alias).
    candidates_per_prompt = models.PositiveSmallIntegerField(
        default=4, help_text="Responses sampled per prompt, among which the round picks its pairs."
    )
    temperature = models.FloatField(default=0.8)
    top_p = models.FloatField(default=0.95)
    max_new_tokens = models.PositiveIntegerField(
        default=256, help_text="Token limit per candidate; generation stops earlier at the end of turn."
    )
    toxicity_threshold = models.FloatField(
        default=0.5, help_text="Block candidates whose calibrated p(unsafe) is above this."
    )
    toxicity_lambda = models.FloatField(
        default=1.0, help_text="λ in shaped = z(reward) − λ·p(unsafe); z in the reward model's sd units."
    )
    unsafe_budget = models.FloatField(
        null=True,
        blank=True,
        help_text="Adapt λ each round to keep the candidates' mean p(unsafe) under this rate "
        "(Safe RLHF's Lagrangian; toxicity_lambda is the first round's λ). Empty: λ fixed.",
    )
    lambda_step = models.FloatField(
        default=5.0,
        help_text="With an unsafe budget: λ's change per round per unit of (unsafe rate − budget).",
    )
    missing_eos_penalty = models.FloatField(
        default=1.0,
        help_text="Subtracted (in z units) from a candidate that hit the token limit; never DPO's chosen.",
    )
    vote_max_uses = models.PositiveSmallIntegerField(
        default=2, help_text="Policy updates a human vote is trained in, at most (newest votes first)."
    )
    explore_rate = models.FloatField(
        default=0.1,
        help_text="Pair selection: probability of a random pair instead of the most uncertain / disputed.",
    )
    human_pairs_ratio = models.FloatField(
        default=0.5,
        help_text="Human-vote pairs per update, at most this many per fresh on-policy pair.",
    )
    blocklist = models.TextField(blank=True, help_text="One word or phrase per line; /regex/ for a regex.")
    # Called `budget` before release 0003 (the API still takes `budget` as an alias).
    pairs_to_publish = models.PositiveIntegerField(
        default=16, help_text="Pairs a round publishes to the rating queue, at most (one per prompt)."
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.NEW_VS_OLD)
    priority = models.IntegerField(
        default=100,
        help_text="Queue priority of published pairs (every round the same: older pairs serve first).",
    )
    beta = models.FloatField(default=0.1)
    learning_rate = models.FloatField(default=5e-6)
    dpo_epochs = models.PositiveSmallIntegerField(default=2)
    dpo_batch_size = models.PositiveSmallIntegerField(default=4)
    dpo_max_steps = models.PositiveIntegerField(null=True, blank=True)
    update_method = models.CharField(
        max_length=8,
        choices=UpdateMethod.choices,
        default=UpdateMethod.FULL,
        help_text="How the policy update trains: every weight, or a LoRA adapter merged when saved "
        "(LoRA usually wants a learning rate about 10× a full fine-tune's).",
    )
    reward_config = models.JSONField(
        default=dict, blank=True, help_text="Overrides for the reward-model run a round starts first."
    )
    # Schedule.
    enabled = models.BooleanField(default=False)
    every_hours = models.FloatField(
        null=True,
        blank=True,
        validators=[every_hours_valid],
        help_text="Hours between scheduled rounds; fractions allowed (0.5 = every 30 minutes), at most 8760.",
    )
    cron = models.CharField(max_length=120, blank=True)
    min_new_preferences = models.PositiveIntegerField(null=True, blank=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Evaluation and gates (training.ml.gates): a round's checkpoint becomes current only when
    # its evaluation against its parent passes `policy_gate`.
    policy_gate = models.CharField(
        max_length=20,
        choices=PolicyGate.choices,
        default=PolicyGate.JUDGE_LOWER_BOUND,
        help_text="When a round's checkpoint becomes current.",
    )
    gate_threshold = models.FloatField(
        default=0.5, help_text="Win rate against the parent the gate asks for (its lower bound for a judge)."
    )
    gate_min_votes = models.PositiveIntegerField(
        default=50, help_text="Evaluation votes needed before the gate decides."
    )
    eval_judge = models.ForeignKey(
        "training.Judge",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The judge that votes on evaluation pairs (judge gate).",
    )
    eval_prompts = models.PositiveIntegerField(default=32, help_text="Held-out prompts per evaluation.")
    eval_samples = models.PositiveSmallIntegerField(default=2, help_text="Samples per prompt and checkpoint.")
    eval_max_new_tokens = models.PositiveIntegerField(default=128)
    eval_priority = models.IntegerField(default=1000, help_text="Queue priority of evaluation pairs.")
    kl_budget = models.FloatField(
        null=True, blank=True, help_text="Pause the schedule when KL to the reference exceeds this."
    )
    paused_reason = models.TextField(
        blank=True, help_text="Why the over-optimisation guard paused the schedule."
    )
    # Checkpoint retention (training.services.policies.checkpoints_prune, after every round and
    # `manage.py checkpoints_prune`): folders of other round checkpoints are deleted.
    keep_checkpoints = models.PositiveSmallIntegerField(
        default=3,
        help_text="Round checkpoints kept on disk: the last N, besides the current one, the base, "
        "any with evaluation votes or a leaderboard rating and any a round uses or evaluates.",
    )
    # The schedule's latest tick (periodic or preference trigger): when, and what it did
    # ("started round 7", "skipped, round 6 is running", "3 of 10 new preferences: no round").
    last_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "round settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(candidates_per_prompt__gte=1), name="round_settings_candidates_gte_1"
            ),
            models.CheckConstraint(condition=Q(toxicity_lambda__gte=0), name="round_settings_lambda_gte_0"),
            models.CheckConstraint(
                condition=Q(unsafe_budget__isnull=True) | Q(unsafe_budget__gte=0, unsafe_budget__lte=1),
                name="round_settings_unsafe_budget_rate",
            ),
            models.CheckConstraint(condition=Q(lambda_step__gt=0), name="round_settings_lambda_step_gt_0"),
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

    class EvaluationState(models.TextChoices):
        NONE = "", "—"
        AWAITING = "awaiting", "awaiting evaluation"
        PASSED = "passed", "evaluation passed"
        FAILED = "failed", "evaluation failed"
        NOT_NEEDED = "not_needed", "no evaluation (gate: always)"

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
    # Ids of the human votes (Preference) this round's policy update trained on: each vote is
    # trained on in at most RoundSettings.vote_max_uses updates.
    trained_vote_ids = models.JSONField(default=list, blank=True)
    # After the job: "" (not decided yet), awaiting (evaluation votes coming in), passed (the
    # checkpoint became current), failed (the parent stays current), not_needed (gate "always").
    evaluation_state = models.CharField(max_length=12, choices=EvaluationState.choices, blank=True)
    gate = models.JSONField(default=dict, blank=True)  # the policy gate's decision and numbers

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

    `sampled_from` "policy_in": sampled from the round's input policy (`RLHFRound.policy_in`:
    the round's own candidates, scored and trained on); "policy_out": sampled from the policy
    the round's update wrote (`RLHFRound.policy_out`) while publishing, for new-vs-old pairs.
    (Before release 0003: `generation` "old" / "new".)
    """

    class SampledFrom(models.TextChoices):
        POLICY_IN = "policy_in", "input policy"
        POLICY_OUT = "policy_out", "updated policy"

    round = models.ForeignKey(RLHFRound, on_delete=models.CASCADE, related_name="candidates")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    sampled_from = models.CharField(max_length=10, choices=SampledFrom.choices, default=SampledFrom.POLICY_IN)
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
    # z(reward): the raw reward in its model's reference sd units (training.ml.shaping).
    reward_z = models.FloatField(null=True, blank=True)
    shaped_reward = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["round", "prompt", "sampled_from", "candidate_index"], name="round_candidate_unique"
            ),
        ]
        indexes = [models.Index(fields=["round", "sampled_from"], name="round_candidate_gen_idx")]


class RoundPair(models.Model):
    """The one pair a round published for a prompt (unique per round and prompt)."""

    round = models.ForeignKey(RLHFRound, on_delete=models.CASCADE, related_name="pairs")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    comparison = models.OneToOneField("annotation.Comparison", on_delete=models.CASCADE, related_name="+")
    strategy = models.CharField(max_length=16, choices=RoundSettings.Strategy.choices)
    candidate_a = models.ForeignKey(RoundCandidate, on_delete=models.CASCADE, related_name="+")
    candidate_b = models.ForeignKey(RoundCandidate, on_delete=models.CASCADE, related_name="+")
    reward_gap = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)  # why these two (pair selection)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "prompt"], name="round_pair_unique_per_prompt"),
        ]
