"""Judges, judge runs, evaluations and policy events (the checkpoint leaderboard issue).

Tables only; the services live in `training.services.judges`, `training.services.evaluations`
and `training.services.gates`.
"""

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Project
from core.jobs import Job
from core.locks import LockNamespace


class Judge(models.Model):
    """A voter that is a program. It votes through the same service as people
    (`preference_submit`, with source "judge") under its own user account, which has no usable
    password and so never signs in to pages.

    kind "reward_model": prefers the higher score of `reward_model`; "chat": an OpenAI-compatible
    chat endpoint (`endpoint_url`, `endpoint_model`; the key comes from the environment,
    JUDGE_API_KEY); "simulated": a seeded noisy voter over `base` (another judge) with the noise
    parameters in `params` (agreement, left_bias, spammer, seconds_median, seconds_sigma, seed).
    """

    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", "Reward model"
        CHAT = "chat", "LLM judge (OpenAI-compatible endpoint)"
        SIMULATED = "simulated", "Simulated raters (noisy copy of another judge)"

    name = models.CharField(max_length=100, unique=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judge")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reward_model = models.ForeignKey(
        "training.RewardModel", null=True, blank=True, on_delete=models.PROTECT, related_name="judges"
    )
    endpoint_url = models.URLField(max_length=500, blank=True)
    endpoint_model = models.CharField(max_length=200, blank=True)
    base = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="simulations"
    )
    params = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["reward_model", "chat", "simulated"]), name="judge_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(kind="reward_model") | Q(reward_model__isnull=False), name="judge_rm_has_model"
            ),
            models.CheckConstraint(
                condition=~Q(kind="chat") | ~Q(endpoint_url=""), name="judge_chat_has_url"
            ),
            models.CheckConstraint(
                condition=~Q(kind="simulated") | Q(base__isnull=False), name="judge_sim_has_base"
            ),
        ]

    def __str__(self) -> str:
        return f"judge {self.name} ({self.kind})"


class JudgeRun(Job):
    """A judge (and, for simulated raters, N voter accounts derived from it) rating a project's
    live queue through the same lease and submit path as people, until `votes_target` votes are
    cast or the queue has nothing left for them."""

    job_kind: ClassVar[str] = "judge_run"
    lock_namespace: ClassVar[LockNamespace] = LockNamespace.JUDGE_RUN

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judge_runs")
    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="runs")
    raters = models.PositiveSmallIntegerField(default=1)
    votes_target = models.PositiveIntegerField()
    only_evaluation = models.BooleanField(default=False, help_text="Vote on evaluation pairs only.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name = "judge run"

    def event_extra(self) -> dict:
        return {"judge": self.judge_id, "votes_target": self.votes_target}


class Evaluation(Job):
    """Evaluation pairs between two checkpoints on the project's held-out evaluation prompts:
    each checkpoint samples `samples` responses per prompt (same seeds), and each (prompt,
    sample) becomes one comparison in the rating queue at `priority`, sides randomised by the
    queue. `metrics` holds what is measured of the challenger on its own samples: KL to the
    reference, truncated fraction, unsafe fraction, proxy reward."""

    job_kind: ClassVar[str] = "evaluation"
    lock_namespace: ClassVar[LockNamespace] = LockNamespace.EVALUATION

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluations")
    challenger = models.ForeignKey("training.PolicyCheckpoint", on_delete=models.PROTECT, related_name="+")
    opponent = models.ForeignKey("training.PolicyCheckpoint", on_delete=models.PROTECT, related_name="+")
    round = models.ForeignKey(
        "training.RLHFRound", null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluations"
    )
    prompts_count = models.PositiveIntegerField(default=32)
    samples = models.PositiveSmallIntegerField(default=1)
    max_new_tokens = models.PositiveIntegerField(default=128)
    temperature = models.FloatField(default=1.0)
    seed = models.BigIntegerField(default=0)
    priority = models.IntegerField(default=1000)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(challenger=models.F("opponent")), name="evaluation_two_checkpoints"
            ),
        ]

    def event_extra(self) -> dict:
        return {"challenger": self.challenger_id, "opponent": self.opponent_id, "round": self.round_id}


class EvaluationPair(models.Model):
    """One comparison of an evaluation: which checkpoint wrote response A and which wrote B."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="pairs")
    comparison = models.OneToOneField("annotation.Comparison", on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey("annotation.Prompt", on_delete=models.CASCADE, related_name="+")
    sample_index = models.PositiveSmallIntegerField(default=0)
    checkpoint_a = models.ForeignKey("training.PolicyCheckpoint", on_delete=models.PROTECT, related_name="+")
    checkpoint_b = models.ForeignKey("training.PolicyCheckpoint", on_delete=models.PROTECT, related_name="+")
    truncated_a = models.BooleanField(default=False)
    truncated_b = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "prompt", "sample_index"], name="evaluation_pair_unique"
            ),
        ]


class PolicyEvent(models.Model):
    """What happened to the current checkpoint, by whom and why: a gate that promoted or held a
    round's checkpoint, a rollback by ops, a schedule paused by the over-optimisation guard."""

    class Kind(models.TextChoices):
        PROMOTED = "promoted", "Made current (gate passed)"
        HELD = "held", "Kept out (gate failed)"
        ROLLBACK = "rollback", "Rolled back by ops"
        PAUSED = "paused", "Schedule paused"
        RESUMED = "resumed", "Schedule resumed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="policy_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    checkpoint = models.ForeignKey(
        "training.PolicyCheckpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    previous = models.ForeignKey(
        "training.PolicyCheckpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    round = models.ForeignKey(
        "training.RLHFRound", null=True, blank=True, on_delete=models.SET_NULL, related_name="policy_events"
    )
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    numbers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]
