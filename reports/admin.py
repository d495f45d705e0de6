"""Admin: the audit trail and the oversight figures, read-only for everyone, superusers included."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEntry, BreakerDay, FreshnessSnapshot, ProviderHealthDay


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnly):
    list_display = ("at", "actor_name", "ip_address", "action", "firm", "household_name", "message")
    list_filter = ("action", "firm")
    search_fields = ("actor_name", "message", "household_name", "object_repr")
    date_hierarchy = "at"
    list_select_related = ("firm",)
    readonly_fields = [f.name for f in AuditEntry._meta.fields]


@admin.register(FreshnessSnapshot)
class FreshnessSnapshotAdmin(ReadOnly):
    list_display = ("day", "firm", "adviser", "households", "households_with_data", "households_fresh")
    list_filter = ("firm",)
    list_select_related = ("firm", "adviser")


@admin.register(ProviderHealthDay)
class ProviderHealthDayAdmin(ReadOnly):
    list_display = ("day", "firm", "provider_app", "checks_succeeded", "failures_transient", "failures_reauth")
    list_filter = ("firm", "provider_app")
    list_select_related = ("firm", "provider_app")


@admin.register(BreakerDay)
class BreakerDayAdmin(ReadOnly):
    list_display = ("day", "provider_app", "openings")
    list_select_related = ("provider_app",)
