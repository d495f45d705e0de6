"""The dashboard's attention rows come from SQL built once per process: the same rows as the queryset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from connections import models as m
from connections import selectors
from connections.selectors.dashboard import ATTENTION_ROW_FIELDS
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory

from .conftest import World


def _shown(rows: list[m.Connection]) -> list[tuple[Any, ...]]:
    return [
        (c.pk, c.attention_total, c.urgency, c.urgent_at, c.household.name, c.client.name, c.provider_app.provider)  # type: ignore[attr-defined]
        for c in rows
    ]


def _expected(user: Any, *, now: Any, limit: int) -> list[tuple[Any, ...]]:
    return _shown(list(selectors.needs_attention_queryset(user=user, now=now).only(*ATTENTION_ROW_FIELDS)[:limit]))


def _populate(world: World) -> None:
    now = timezone.now()
    for i, household in enumerate([world.household, world.other_household, world.foreign_household] * 4):
        client = ClientFactory(household=household)
        kind = (i // 3) % 3  # each household gets one of each: broken, degraded, active
        broken = kind == 0
        ConnectionFactory(
            client=client,
            provider_app=world.turnqey,
            status=m.Status.NEEDS_RECONNECT if broken else m.Status.DEGRADED if kind == 1 else m.Status.ACTIVE,
            reason=m.Reason.REVOKED if broken else "",
            degraded_since=now - timedelta(hours=i),
            reconnect_by=now + timedelta(hours=3 * i) if i % 2 else None,
        )
    HouseholdFactory(firm=world.firm, name="Empty", advisers=[world.adviser])


@pytest.mark.parametrize("who", ["adviser", "other_adviser", "firm_admin"])
def test_the_prebuilt_statement_reads_what_the_queryset_reads(world: World, who: str) -> None:
    _populate(world)
    user = getattr(world, who)
    for offset in (timedelta(0), timedelta(hours=5), timedelta(days=-2)):
        now = timezone.now() + offset
        for limit in (1, 10):
            rows = selectors.needs_attention_list(user=user, now=now, limit=limit)
            assert _shown(rows) == _expected(user, now=now, limit=limit)
    assert selectors.needs_attention_list(user=world.firm_admin, limit=50)  # the firm's, every adviser's


def test_changed_tunables_build_their_own_statement(world: World) -> None:
    _populate(world)
    now = timezone.now()
    before = _shown(selectors.needs_attention_list(user=world.adviser, now=now))
    with override_settings(LIFECYCLE_DEADLINE_WARNING_SECONDS=60, LIFECYCLE_DEGRADED_ATTENTION_SECONDS=10 * 3600):
        changed = _shown(selectors.needs_attention_list(user=world.adviser, now=now))
        assert changed == _expected(world.adviser, now=now, limit=50)
    assert changed != before
    assert _shown(selectors.needs_attention_list(user=world.adviser, now=now)) == before


def test_a_user_without_a_firm_needs_nothing(world: World) -> None:
    from django.contrib.auth.models import AnonymousUser

    assert selectors.needs_attention_list(user=AnonymousUser()) == []
