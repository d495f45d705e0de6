"""Create the background jobs' schedules in django-celery-beat (idempotent).

Missing schedules are created with the defaults below. Existing ones are left
exactly as they are, because an admin may have changed an interval or
disabled a job in admin on purpose and a deploy must not undo that; only the
task name and description are kept in step. ``--reset`` puts every default
schedule (interval or crontab, enabled, expiry) back.

Other installed apps add their own jobs without this module knowing them: an
``AppConfig`` with a ``default_schedules`` attribute (a sequence of mappings
with :class:`DefaultSchedule`'s fields) has those created too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: dict[str, str] | None = None
    # A run still queued after this long is dropped: the next one is coming.
    expire_seconds: int | None = None


DEFAULT_SCHEDULES: tuple[DefaultSchedule, ...] = (
    DefaultSchedule(
        name="Connections: sweep due connections",
        task="connections.sweep",
        description="Claims connections whose next check is due and enqueues one check each.",
        every_seconds=60,
        expire_seconds=55,
    ),
    DefaultSchedule(
        name="Connections: housekeeping",
        task="connections.housekeeping",
        description="Expires stale authorization requests and client links; records deadline warnings.",
        every_seconds=300,
        expire_seconds=290,
    ),
    DefaultSchedule(
        name="Connections: refresh app tokens",
        task="connections.refresh_app_tokens",
        description="Keeps each enabled provider app's app token fresh.",
        every_seconds=300,
        expire_seconds=290,
    ),
    DefaultSchedule(
        name="Connections: adviser digests",
        task="connections.send_digests",
        description="Emails each adviser the connections that need reconnecting, will lapse soon, or recovered.",
        crontab={"minute": "0", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"},
        expire_seconds=3000,
    ),
    DefaultSchedule(
        name="Connections: reconnect request reminders",
        task="connections.send_reminders",
        description="Follows up clients' reconnect requests (reminders, closing what recovered), keeps "
        "notification problems current and resumes throttled bulk requests.",
        every_seconds=900,
        expire_seconds=850,
    ),
    # Firm oversight (the reports app): named here so one command sets up every schedule.
    DefaultSchedule(
        name="Reports: freshness snapshot",
        task="reports.freshness_snapshot",
        description="Records each firm's and each adviser's data freshness for today (the last run of a day counts).",
        crontab={"minute": "50", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"},
        expire_seconds=3000,
    ),
    DefaultSchedule(
        name="Reports: provider health and audit catch-up",
        task="reports.oversight_tally",
        description="Adds the last 5 minutes' checks, failures and breaker openings to each day; folds connects, "
        "reconnects and disconnects into the audit trail.",
        every_seconds=300,
        expire_seconds=290,
    ),
)


def all_default_schedules() -> list[DefaultSchedule]:
    """These defaults, then each installed app's ``default_schedules`` (see the module docstring)."""
    schedules = list(DEFAULT_SCHEDULES)
    for config in apps.get_app_configs():
        extra: Any = getattr(config, "default_schedules", ())
        for entry in extra:
            schedules.append(entry if isinstance(entry, DefaultSchedule) else DefaultSchedule(**dict(entry)))
    return schedules


def _schedule_fields(default: DefaultSchedule) -> dict[str, Any]:
    if default.every_seconds is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=default.every_seconds, period=IntervalSchedule.SECONDS
        )
        return {"interval": interval, "crontab": None}
    assert default.crontab is not None
    crontab, _ = CrontabSchedule.objects.get_or_create(**default.crontab, timezone="UTC")
    return {"crontab": crontab, "interval": None}


class Command(BaseCommand):
    help = "Create (or, with --reset, restore) the periodic background jobs in django-celery-beat."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Put the default schedule, enabled flag and expiry back on existing jobs too.",
        )

    @transaction.atomic
    def handle(self, *args: Any, reset: bool = False, **options: Any) -> None:
        for default in all_default_schedules():
            existing = PeriodicTask.objects.filter(name=default.name).first()
            if existing is None:
                PeriodicTask.objects.create(
                    name=default.name,
                    task=default.task,
                    description=default.description,
                    enabled=True,
                    expire_seconds=default.expire_seconds,
                    **_schedule_fields(default),
                )
                self.stdout.write(f"created  {default.name} ({default.task})")
                continue
            changed = existing.task != default.task or existing.description != default.description
            existing.task = default.task
            existing.description = default.description
            if reset:
                for attr, value in _schedule_fields(default).items():
                    setattr(existing, attr, value)
                existing.solar = existing.clocked = None
                existing.enabled = True
                existing.expire_seconds = default.expire_seconds
                changed = True
            if changed:
                existing.save()
                self.stdout.write(f"{'reset' if reset else 'updated'}    {default.name}")
            else:
                self.stdout.write(f"kept     {default.name} (as configured in admin)")
