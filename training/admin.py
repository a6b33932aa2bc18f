from django.contrib import admin

from training.models import PolicyCheckpoint, RewardModel, RLHFRound, RoundSettings


@admin.register(RewardModel)
class RewardModelAdmin(admin.ModelAdmin):
    """Read-only view of the registry: runs are started, cancelled and promoted by the services
    (ops page, API, manage.py train_reward_model), never edited by hand here."""

    list_display = (
        "project",
        "version",
        "status",
        "is_active",
        "heldout_accuracy",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "is_active", "project")
    search_fields = ("project__name", "artefact_sha256", "snapshot_sha256")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class _ReadOnly(admin.ModelAdmin):
    """Rounds and checkpoints are written by the round services (ops pages, API, beat), never here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RLHFRound)
class RLHFRoundAdmin(_ReadOnly):
    list_display = (
        "project",
        "number",
        "state",
        "trigger",
        "policy_in",
        "policy_out",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "step", "trigger", "project")


@admin.register(PolicyCheckpoint)
class PolicyCheckpointAdmin(_ReadOnly):
    list_display = ("project", "pk", "kind", "parent", "round", "is_current", "sha256", "created_at")
    list_filter = ("kind", "is_current", "project")
    search_fields = ("sha256", "path")


@admin.register(RoundSettings)
class RoundSettingsAdmin(_ReadOnly):
    list_display = ("project", "enabled", "every_hours", "cron", "min_new_preferences", "updated_at")
