"""Staff can see who is locked out of the second step, and lift a lockout by deleting its row."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import CodeFailures


@admin.register(CodeFailures)
class CodeFailuresAdmin(admin.ModelAdmin):
    list_display = ("user", "address", "failures", "last_failure_at", "locked_until")
    search_fields = ("user__username", "user__email", "address")
    readonly_fields = ("user", "address", "failures", "last_failure_at", "locked_until")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
