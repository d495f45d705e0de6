"""The seeded demo against a live sandbox: working connections stay working, broken ones stay broken."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from connections import lifecycle
from connections import models as m
from connections.demo.world import ACTOR_LABEL
from connections.providers.transport import shared_session
from tests.seed_demo_support import seed

S = m.Status
WORKING = (S.ACTIVE, S.DEGRADED)


@pytest.fixture(autouse=True)
def _development(settings: Any, live_server: Any) -> None:
    # pytest-django runs with DEBUG off; seed_demo is development-only.
    settings.DEBUG = True
    settings.PORTAL_BASE_URL = live_server.url
    settings.SANDBOX_BASE_URL = f"{live_server.url}/sandbox"


def check_all(ids: list[int]) -> dict[int, lifecycle.CheckResult]:
    try:
        return {pk: lifecycle.connection_check(connection_id=pk, actor_label="test", force=True) for pk in sorted(ids)}
    finally:
        # No kept-alive socket of this test may outlive its live server.
        shared_session().close()


def credentials_deleted_when_flagged(connection: m.Connection) -> bool:
    flagged = connection.events.filter(kind=m.ConnectionEvent.Kind.CHECK_FAILED, to_status=S.NEEDS_RECONNECT)
    return "credentials_deleted" in flagged.latest("created_at").details


@pytest.mark.django_db(transaction=True)
def test_seeded_connections_hold_up_when_checked_against_the_live_sandbox() -> None:
    seed()
    seeded = {c.pk: c for c in m.Connection.objects.all()}
    working = [pk for pk, c in seeded.items() if c.status in WORKING]
    flagged = [pk for pk, c in seeded.items() if c.status == S.NEEDS_RECONNECT]
    assert {seeded[pk].provider for pk in working} == set(m.Provider.values)
    assert any(seeded[pk].status == S.DEGRADED for pk in working)

    # Twice: the second round runs on what the first renewed.
    for _ in range(2):
        results = check_all(working)
        assert {pk: r.status for pk, r in results.items()} == dict.fromkeys(working, S.ACTIVE)
    assert m.Account.objects.filter(connection_id__in=working, connection__status=S.ACTIVE).exists()

    # A forced check of a flagged connection finds it still broken at the sandbox,
    # for the reason it was flagged wherever the check still has credentials to
    # try (a renewal refused for good deleted them, and then there is nothing left).
    kept = {pk for pk in flagged if not credentials_deleted_when_flagged(seeded[pk])}
    assert {seeded[pk].provider for pk in kept} >= {"turnqey", "dapi"}
    results = check_all(flagged)
    for pk, result in results.items():
        assert result.status == S.NEEDS_RECONNECT, (seeded[pk], result)
        if pk in kept:
            assert m.Connection.objects.get(pk=pk).reason == seeded[pk].reason, seeded[pk]
    untouched = m.Connection.objects.filter(status__in=[S.PENDING, S.DISCONNECTED])
    assert {c.pk: c.status for c in untouched} == {
        pk: c.status for pk, c in seeded.items() if c.status in (S.PENDING, S.DISCONNECTED)
    }


@pytest.mark.django_db(transaction=True)
def test_refresh_sandbox_brings_the_demo_back_after_a_sandbox_reset(live_server: Any) -> None:
    seed()
    working = list(m.Connection.objects.filter(status__in=WORKING).values_list("pk", flat=True))
    requests.post(f"{live_server.url}/sandbox/_control/reset", json={}, timeout=10).raise_for_status()
    check_all(working)
    # The reset broke the demo: connections flagged, and Turnqey's app (forgotten too) rejected.
    flagged = m.Connection.objects.filter(pk__in=working, status=S.NEEDS_RECONNECT)
    assert set(flagged.values_list("provider", flat=True)) == {"coinify", "bloquo", "dapi"}
    assert m.ProviderApp.objects.get(provider="turnqey").credentials_rejected_at is not None

    output = seed(refresh_sandbox=True)

    assert "sandbox subjects" in output
    results = check_all(working)
    assert {pk: r.status for pk, r in results.items()} == dict.fromkeys(working, S.ACTIVE)
    assert m.ConnectionEvent.objects.filter(
        connection_id__in=working, kind=m.ConnectionEvent.Kind.RECOVERED, actor_label=ACTOR_LABEL
    ).exists()
    # The connections seeded broken are broken again at the new sandbox, the way they were.
    for connection in m.Connection.objects.filter(status=S.NEEDS_RECONNECT).exclude(pk__in=working):
        if not credentials_deleted_when_flagged(connection):
            result = check_all([connection.pk])[connection.pk]
            assert result.status == S.NEEDS_RECONNECT, connection
