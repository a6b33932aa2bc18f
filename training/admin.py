from django.contrib import admin

from training.models import RewardModel


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
