"""Django admin (staff only, by Django's design) for looking into the rating data.

Rows that services own (assignments, votes, skips) are read-only here: editing a vote or an
assignment by hand would break the counters and invariants the queue relies on. Projects are
edited on the ops pages (or here, by staff).
"""

from django.contrib import admin

from annotation.models import (
    Assignment,
    Comparison,
    Preference,
    Project,
    ProjectMember,
    Prompt,
    Response,
    Skip,
)
from annotation.services.members import project_member_remove


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse and search; rows are written by the services, not by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "overlap", "lease_seconds", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)


@admin.register(ProjectMember)
class ProjectMemberAdmin(admin.ModelAdmin):
    """Who may see which project (raters and researchers; ops see all). Removing goes through
    the service, which also sends the pairs the user holds there back to the queue."""

    list_display = ("user", "project", "added_by", "added_at")
    list_filter = ("project",)
    list_select_related = ("user", "project", "added_by")
    search_fields = ("user__username", "project__name")
    raw_id_fields = ("user", "added_by")
    readonly_fields = ("added_at",)

    def delete_model(self, request, obj):
        project_member_remove(project=obj.project, user=obj.user)

    def delete_queryset(self, request, queryset):
        for member in queryset.select_related("project", "user"):
            project_member_remove(project=member.project, user=member.user)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "first_message", "created_at")
    list_filter = ("project",)
    list_select_related = ("project",)
    search_fields = ("content_hash", "messages")
    raw_id_fields = ("project",)
    readonly_fields = ("content_hash", "created_at")

    @admin.display(description="First message")
    def first_message(self, obj: Prompt) -> str:
        text = obj.messages[0]["content"] if obj.messages else ""
        return text[:80] + ("…" if len(text) > 80 else "")


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "prompt_id",
        "source",
        "model_name",
        "policy_checkpoint_id",
        "short_text",
        "created_at",
    )
    list_filter = ("source", "prompt__project")
    search_fields = ("text", "model_name")
    raw_id_fields = ("prompt",)
    readonly_fields = ("created_at",)

    @admin.display(description="Text")
    def short_text(self, obj: Response) -> str:
        return obj.text[:80] + ("…" if len(obj.text) > 80 else "")


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "project",
        "prompt_id",
        "votes_count",
        "votes_needed",
        "priority",
        "gold_choice",
        "round_id",
        "created_at",
    )
    list_filter = ("project", "gold_choice")
    list_select_related = ("project",)
    search_fields = ("=id", "=prompt__id")
    raw_id_fields = ("project", "prompt", "response_a", "response_b")
    # The vote counter is kept by the submit service; the assignments were made for votes_needed.
    readonly_fields = ("votes_count", "votes_needed", "created_at")


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "comparison_id",
        "slot",
        "project",
        "state",
        "rater",
        "left",
        "expires_at",
        "lease_count",
    )
    list_filter = ("state", "project")
    list_select_related = ("project", "rater")
    search_fields = ("=comparison__id", "rater__username")
    raw_id_fields = ("comparison", "project", "rater")


@admin.register(Skip)
class SkipAdmin(ReadOnlyAdmin):
    list_display = ("id", "rater", "comparison_id", "reason", "created_at")
    list_filter = ("comparison__project",)
    list_select_related = ("rater",)
    search_fields = ("rater__username", "reason", "=comparison__id")
    raw_id_fields = ("rater", "comparison")


@admin.register(Preference)
class PreferenceAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "rater",
        "comparison_id",
        "choice",
        "strength",
        "shown_left",
        "unsafe_a",
        "unsafe_b",
        "source",
        "created_at",
    )
    list_filter = ("choice", "strength", "unsafe_a", "unsafe_b", "source", "comparison__project")
    list_select_related = ("rater",)
    search_fields = ("rater__username", "rationale", "=comparison__id")
    raw_id_fields = ("rater", "comparison")
    date_hierarchy = "created_at"
