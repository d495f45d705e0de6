"""Provider health per day: checks from the tally, failures by kind from events, breaker openings."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from reports import jobs, tasks
from reports.models import BreakerDay, ProviderHealthDay
from tests.factories import ConnectionEventFactory

from .conftest import World

pytestmark = pytest.mark.django_db

SLOT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _failed(connection: m.Connection, at: dt.datetime, kind: str | None) -> None:
    details = {"error_kind": kind} if kind else {"interrupted": True}
    ConnectionEventFactory(connection=connection, kind="check_failed", created_at=at, details=details)


def test_the_tally_counts_one_slots_checks_and_failures_by_kind(world: World) -> None:
    inside, before = SLOT - dt.timedelta(minutes=2), SLOT - dt.timedelta(minutes=7)
    m.Connection.objects.filter(pk__in=[world.connection.pk, world.other_connection.pk]).update(last_success_at=inside)
    m.Connection.objects.filter(pk=world.foreign_connection.pk).update(last_success_at=before)
    _failed(world.connection, inside, "transient")
    _failed(world.connection, inside, "transient")
    _failed(world.other_connection, inside, "reauth_required")
    _failed(world.other_connection, inside, None)
    _failed(world.foreign_connection, before, "transient")

    jobs.provider_health_tally(slot_start=SLOT)

    row = ProviderHealthDay.objects.get(firm=world.firm, provider_app=world.turnqey, day=SLOT.date())
    assert (row.checks_succeeded, row.failures_transient, row.failures_reauth, row.failures_other) == (2, 2, 1, 1)
    assert row.checks == 6
    assert not ProviderHealthDay.objects.filter(firm=world.foreign_household.firm).exists()

    jobs.provider_health_tally(slot_start=SLOT - dt.timedelta(minutes=5))  # the slot before: the foreign rows

    foreign = ProviderHealthDay.objects.get(firm=world.foreign_household.firm)
    assert (foreign.checks_succeeded, foreign.failures_transient) == (1, 1)
    assert ProviderHealthDay.objects.get(firm=world.firm).checks == 6  # nothing counted twice


def test_breaker_openings_are_counted_per_slot_whether_still_open_or_closed_since(world: World) -> None:
    inside = SLOT - dt.timedelta(minutes=1)
    m.ProviderApp.objects.filter(pk=world.turnqey.pk).update(breaker_state="open", breaker_opened_at=inside)
    m.ProviderApp.objects.filter(pk=world.coinify.pk).update(
        breaker_state="closed",
        breaker_opened_at=None,
        last_error="Circuit breaker opened after 20 temporary failures within 60 s.",
        last_error_at=inside,
    )
    m.ProviderApp.objects.filter(pk=world.bloquo.pk).update(
        breaker_state="open", breaker_opened_at=SLOT - dt.timedelta(minutes=20)
    )

    jobs.provider_health_tally(slot_start=SLOT)

    assert dict(BreakerDay.objects.values_list("provider_app_id", "openings")) == {
        world.turnqey.pk: 1,
        world.coinify.pk: 1,
    }


def test_the_tally_task_runs_once_per_slot(world: World) -> None:
    assert tasks.oversight_tally() != {}
    assert tasks.oversight_tally() == {}


def test_firm_admins_see_their_firms_provider_health(client: Client, world: World) -> None:
    today = timezone.localdate()
    ProviderHealthDay.objects.create(
        firm=world.firm, provider_app=world.turnqey, day=today, checks_succeeded=90, failures_transient=7
    )
    ProviderHealthDay.objects.create(
        firm=world.foreign_household.firm, provider_app=world.coinify, day=today, checks_succeeded=5
    )
    BreakerDay.objects.create(provider_app=world.turnqey, day=today, openings=2)
    client.force_login(world.firm_admin)

    body = client.get(reverse("reports:provider_health")).content.decode()

    assert "Turnqey Sandbox" in body
    assert "Coinify Sandbox" not in body
    assert "97 checks, 7 failures, breaker opened in 2 five-minute periods" in body
    assert '<title id="failures-' in body
    assert "<desc id=" in body


def test_provider_health_is_for_firm_admins(client: Client, world: World) -> None:
    client.force_login(world.adviser)
    assert client.get(reverse("reports:provider_health")).status_code == 403


def test_each_reports_schedule_runs_at_least_once_per_slot_of_its_job() -> None:
    from connections.management.commands.setup_periodic_tasks import DEFAULT_SCHEDULES

    slots = {
        "reports.freshness_snapshot": tasks.SNAPSHOT_SLOT_SECONDS,
        "reports.oversight_tally": jobs.TALLY_SLOT_SECONDS,
    }
    scheduled = {s.task: s for s in DEFAULT_SCHEDULES if s.task.startswith("reports.")}
    assert set(scheduled) == set(slots)
    for task, schedule in scheduled.items():
        interval = schedule.every_seconds or 3600  # the snapshot's crontab runs hourly
        assert slots[task] <= interval, f"{task}: a slot longer than its interval would skip runs"
