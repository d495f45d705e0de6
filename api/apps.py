from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "api"
    verbose_name = "API and webhooks"

    # Beat schedules, created by `manage.py setup_periodic_tasks` with the portal's own.
    default_schedules: tuple[dict[str, Any], ...] = (
        {
            "name": "API: webhook dispatch and deliveries",
            "task": "api.webhooks_tick",
            "description": "Makes webhook events of newly committed connection events and sends due deliveries.",
            "every_seconds": 15,
            "expire_seconds": 14,
        },
        {
            "name": "API: housekeeping",
            "task": "api.housekeeping",
            "description": "Forgets expired idempotency records and prunes old webhook events and delivery logs.",
            "every_seconds": 3600,
            "expire_seconds": 3000,
        },
    )

    def ready(self) -> None:
        from connections.signals import events_committed

        from .webhooks.dispatch import on_events_committed

        # dispatch_uid: one receiver even if ready() ran twice (tests, autoreload).
        events_committed.connect(on_events_committed, dispatch_uid="api.webhooks.dispatch")
