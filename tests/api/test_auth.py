"""Who may call what, over real HTTP: no key, a bad or revoked key, a read key, a write key; and the rate limit."""

from __future__ import annotations

import hashlib
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from api.models import ApiKey
from connections import models as m

from .conftest import ApiWorld

pytestmark = pytest.mark.django_db(transaction=True)

PROBLEM = "application/problem+json"


def _routes(world: ApiWorld) -> list[tuple[str, str, int]]:
    """(method, path, status a write key gets) for every operation, on objects of the key's own firm."""
    ours = world.ours
    connection = next(c for c in ours.connections if c.status == m.Status.ACTIVE)
    household, client = ours.households[0], ours.clients[0]
    return [
        ("GET", "/households", 200),
        ("GET", f"/households/{household.pk}", 200),
        ("GET", "/clients", 200),
        ("GET", f"/clients/{client.pk}", 200),
        ("GET", "/connections", 200),
        ("GET", f"/connections/{connection.pk}", 200),
        ("GET", f"/connections/{connection.pk}/events", 200),
        ("GET", f"/connections/{connection.pk}/accounts", 200),
        ("GET", "/events", 200),
        ("POST", f"/connections/{connection.pk}/client-links", 201),
        ("POST", f"/connections/{connection.pk}/check", 202),
        ("GET", f"/households/{household.pk}/reconnect-requests", 200),
        # The household has a connection that needs its client.
        ("POST", f"/households/{household.pk}/reconnect-requests", 201),
        # Last: it ends the connection.
        ("POST", f"/connections/{connection.pk}/disconnect", 200),
    ]


def test_every_route_needs_a_valid_key_and_writes_need_the_write_scope(api_world: ApiWorld) -> None:
    world = api_world
    callers = {
        "no key": world.client(None),
        "not a key": world.client("cpk_notakey123_" + "x" * 43),
        "revoked": world.client(world.revoked_key),
        "read": world.client(world.ours.read_key),
        "write": world.client(world.ours.write_key),
    }
    # Bearer with something that is not even shaped like a key, and another scheme.
    garbled = world.client(None)
    garbled.http.headers["Authorization"] = "Basic dXNlcjpwYXNz"
    callers["other scheme"] = garbled

    seen: dict[tuple[str, str, str], int] = {}
    for method, path, write_status in _routes(world):
        for who, caller in callers.items():
            response = caller.request(method, path, json={} if method == "POST" else None)
            seen[(who, method, path)] = response.status_code
            if who in ("no key", "not a key", "revoked", "other scheme"):
                assert response.status_code == 401, (who, method, path, response.text)
                assert response.headers["Content-Type"] == PROBLEM
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert response.json()["code"] == "unauthenticated"
            elif who == "read" and method == "POST":
                assert response.status_code == 403, (method, path, response.text)
                assert response.headers["Content-Type"] == PROBLEM
                assert response.json()["code"] == "scope_required"
            elif who == "read":
                assert response.status_code == 200, (method, path, response.text)
            else:
                assert response.status_code == write_status, (method, path, response.text)
    assert len(seen) == len(callers) * 14


def test_a_refused_write_changes_nothing(api_world: ApiWorld) -> None:
    connection = next(c for c in api_world.ours.connections if c.status == m.Status.ACTIVE)
    reader = api_world.client(api_world.ours.read_key)
    for action in ("client-links", "check", "disconnect"):
        assert reader.post(f"/connections/{connection.pk}/{action}", json={}).status_code == 403
    connection.refresh_from_db()
    assert connection.status == m.Status.ACTIVE
    assert not m.ClientLink.objects.exists()
    assert not connection.events.exclude(kind="connected").exists()


def test_a_key_is_stamped_when_used_and_a_revoked_key_stops_at_once(api_world: ApiWorld) -> None:
    key = ApiKey.objects.get(name="CRM read", firm=api_world.ours.firm)
    assert key.last_used_at is None
    caller = api_world.client(api_world.ours.read_key)
    assert caller.get("/connections").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None

    from api.keys import api_key_revoke

    api_key_revoke(api_key=key)
    assert caller.get("/connections").status_code == 401


def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_do_not(
    api_world: ApiWorld, settings: Any
) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    busy = api_world.client(api_world.ours.read_key)
    other = api_world.client(api_world.ours.write_key)
    statuses = [busy.get("/households").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = busy.get("/households")
    assert limited.status_code == 429
    assert limited.headers["Content-Type"] == PROBLEM
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["code"] == "rate_limited"
    assert other.get("/households").status_code == 200


def test_api_key_create_prints_the_key_once_and_stores_only_its_hash(db: None) -> None:
    firm = m.Firm.objects.create(name="Command Firm", slug="command-firm")
    out, err = StringIO(), StringIO()
    call_command("api_key_create", firm="command-firm", name="CRM", scope="write", stdout=out, stderr=err)

    key = out.getvalue().strip()
    row = ApiKey.objects.get(firm=firm)
    assert key.startswith(f"cpk_{row.prefix}_")
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (row.name, row.scope) == ("CRM", ApiKey.Scope.WRITE)
    assert key not in err.getvalue()
    assert row.prefix in err.getvalue()
    stored = [str(value) for value in ApiKey.objects.values_list(flat=False).get(pk=row.pk)]
    assert key not in stored


def test_api_key_create_refuses_an_unknown_firm(db: None) -> None:
    with pytest.raises(CommandError, match="No firm"):
        call_command("api_key_create", firm="nobody", name="CRM", stdout=StringIO(), stderr=StringIO())
