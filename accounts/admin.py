"""Django admin (staff): tokens can be looked at and deleted (revoked); throttle events read."""

from django.contrib import admin

from accounts.models import ApiToken, ThrottleEvent


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created", "expires_at", "last_used_at"]
    search_fields = ["user__username", "prefix", "name"]
    readonly_fields = [f.name for f in ApiToken._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ThrottleEvent)
class ThrottleEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "scope", "rate"]
    list_filter = ["scope"]
    readonly_fields = [f.name for f in ThrottleEvent._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False
