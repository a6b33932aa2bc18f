"""Policy checkpoints: saved policy folders and where they came from."""

from django.db import models
from django.db.models import Q

from annotation.models import Project
from training.models.reward import RewardModel


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
    # When retention deleted the folder (the row stays: rounds, events and evaluations point at
    # it); a pruned checkpoint can no longer be loaded or made current.
    pruned_at = models.DateTimeField(null=True, blank=True)

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
