"""Provider callbacks: state checks, mix-up defence, replay, expiry, bad parameters, outcomes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections.providers.errors import ProviderError
from tests.factories import ConnectionFactory

from .conftest import FakeProvider, World


def _start(client: Any, world: World, *, app: m.ProviderApp | None = None, platform: str = "gemini") -> str:
    """Start a connect through the view, as the browser would; returns the state."""
    app = app or world.turnqey
    response = client.post(
        reverse("household_connect", args=[world.household.pk]),
        {"client": world.client.pk, "provider_app": app.pk, "platform": platform},
    )
    assert response.status_code == 302
    return FakeProvider.state_from(response["Location"])


def _turnqey_params(state: str, **extra: str) -> dict[str, str]:
    return {"state": state, "identity": "x", "collection": "y", "platform": "gemini", "status": "success", **extra}


def _callback(client: Any, provider: str, params: dict[str, str] | str) -> Any:
    query = params if isinstance(params, str) else urlencode(params)
    return client.get(f"{reverse('connect_callback', args=[provider])}?{query}")


def test_approved_callback_activates_the_connection_and_returns_to_the_household(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    state = _start(adviser_client, world)
    response = _callback(adviser_client, "turnqey", _turnqey_params(state))
    assert response.status_code == 302
    assert response["Location"] == reverse("household_detail", args=[world.household.pk])
    assert response["Referrer-Policy"] == "no-referrer"
    request = m.AuthorizationRequest.objects.get()
    assert request.used_at is not None
    assert request.outcome == "approved"
    connection = request.connection
    assert connection.status == m.Status.ACTIVE
    assert connection.external_account_id == "source-account-1"
    world.household.refresh_from_db()
    assert str(world.household.turnqey_collection) == fake_provider.collection
    page = adviser_client.get(response["Location"]).content.decode()
    assert "Gemini via Turnqey connected for Linh Nguyen." in page


def test_replayed_state_is_refused(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    state = _start(adviser_client, world)
    assert _callback(adviser_client, "turnqey", _turnqey_params(state)).status_code == 302
    # The session no longer holds it either; bind it again to prove the DB claim alone refuses it.
    session = adviser_client.session
    session["authorization_state_hashes"] = [m.AuthorizationRequest.objects.get().state_hash]
    session.save()
    replay = _callback(adviser_client, "turnqey", _turnqey_params(state))
    assert replay.status_code == 400
    assert "already used" in replay.content.decode()
    assert len(fake_provider.completes) == 1


def test_expired_state_gets_a_clear_message(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    state = _start(adviser_client, world)
    m.AuthorizationRequest.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _callback(adviser_client, "turnqey", _turnqey_params(state))
    assert response.status_code == 410
    assert "took longer than 15 minutes and expired" in response.content.decode()
    assert fake_provider.completes == []
    assert m.AuthorizationRequest.objects.get().outcome == "expired"


def test_callback_at_another_providers_url_is_refused_and_not_consumed(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    state = _start(adviser_client, world)
    response = _callback(adviser_client, "dapi", {"state": state, "accessCode": "a", "connectionID": "c"})
    assert response.status_code == 400
    assert "did not come from Turnqey" in response.content.decode()
    assert m.AuthorizationRequest.objects.get().used_at is None
    assert fake_provider.completes == []
    assert _callback(adviser_client, "turnqey", _turnqey_params(state)).status_code == 302


@pytest.mark.parametrize(
    "query",
    [
        "state=abc&unexpected=1",
        "state=abc&state=def",
        "state=abc&status=success&status=denied",
        "state=" + "a" * 3000,
        "identity=x&status=success",
        "",
    ],
    ids=["unknown", "duplicate-state", "duplicate-status", "oversized", "no-state", "empty"],
)
def test_bad_callback_parameters_are_a_400(
    adviser_client: Any, world: World, fake_provider: FakeProvider, query: str
) -> None:
    response = _callback(adviser_client, "turnqey", query)
    assert response.status_code == 400
    assert response["Referrer-Policy"] == "no-referrer"
    assert fake_provider.completes == []


def test_unknown_state_is_a_400(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    response = _callback(adviser_client, "turnqey", _turnqey_params("never-issued"))
    assert response.status_code == 400
    assert "not valid" in response.content.decode()


def test_form_providers_have_no_callback(adviser_client: Any) -> None:
    assert adviser_client.get(reverse("connect_callback", args=["coinify"]) + "?state=x").status_code == 404
    assert adviser_client.get(reverse("connect_callback", args=["nosuch"]) + "?state=x").status_code == 404


def test_callback_in_another_browser_is_refused(world: World, fake_provider: FakeProvider) -> None:
    starter = Client()
    starter.force_login(world.adviser)
    state = _start(starter, world)
    stranger = Client()  # not signed in, no session binding
    response = _callback(stranger, "turnqey", _turnqey_params(state))
    assert response.status_code == 403
    assert m.AuthorizationRequest.objects.get().used_at is None


def test_callback_for_another_user_is_refused(client: Any, world: World, fake_provider: FakeProvider) -> None:
    client.force_login(world.adviser)
    state = _start(client, world)
    client.force_login(world.firm_admin)  # same browser, someone else signed in
    # Even with the state bound to this browser session, the user must be the one who started it.
    session = client.session
    session["authorization_state_hashes"] = [m.AuthorizationRequest.objects.get().state_hash]
    session.save()
    response = _callback(client, "turnqey", _turnqey_params(state))
    assert response.status_code == 403
    assert m.AuthorizationRequest.objects.get().used_at is None


def test_denied_callback_says_so_and_connects_nothing(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    state = _start(adviser_client, world)
    response = _callback(
        adviser_client, "turnqey", _turnqey_params(state, status="denied", error_description="User declined")
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Access was not granted" in body
    assert "nothing was connected" in body
    assert m.AuthorizationRequest.objects.get().outcome == "denied"
    assert not m.Connection.objects.filter(platform="gemini", status=m.Status.ACTIVE).exists()


def test_dapi_denial_says_so(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    state = _start(adviser_client, world, app=world.dapi, platform="kraken")
    response = _callback(
        adviser_client, "dapi", {"state": state, "error": "access_denied", "error_description": "User cancelled"}
    )
    assert response.status_code == 200
    assert "Access was not granted" in response.content.decode()


def test_provider_error_while_completing_is_explained(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    state = _start(adviser_client, world, app=world.dapi, platform="kraken")
    fake_provider.complete_error = ProviderError.transient("Dapi answered 503.")
    response = _callback(adviser_client, "dapi", {"state": state, "accessCode": "code", "connectionID": "c1"})
    assert response.status_code == 502
    assert "could not be reached or answered unexpectedly" in response.content.decode()
    assert m.AuthorizationRequest.objects.get().outcome == "error"


def test_reconnect_to_a_different_source_account_is_refused(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    broken = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="kraken",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id="kraken-original",
    )
    response = adviser_client.post(reverse("connection_reconnect", args=[broken.pk]))
    state = FakeProvider.state_from(response["Location"])
    fake_provider.external_account_id = "kraken-someone-else"
    result = _callback(adviser_client, "turnqey", _turnqey_params(state, platform="kraken"))
    assert result.status_code == 409
    assert "A different account signed in" in result.content.decode()
    broken.refresh_from_db()
    assert broken.status == m.Status.NEEDS_RECONNECT
    assert broken.external_account_id == "kraken-original"
    assert broken.events.filter(kind=m.ConnectionEvent.Kind.RECONNECT_REFUSED).count() == 1
    assert m.AuthorizationRequest.objects.get().outcome == "mismatch"


def test_reconnect_keeps_the_households_collection(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    import uuid

    world.household.turnqey_collection = uuid.uuid4()
    world.household.save()
    broken = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="kraken",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id="source-account-1",
    )
    response = adviser_client.post(reverse("connection_reconnect", args=[broken.pk]))
    state = FakeProvider.state_from(response["Location"])
    assert fake_provider.starts[-1]["grouping"] == {"collection": str(world.household.turnqey_collection)}
    result = _callback(adviser_client, "turnqey", _turnqey_params(state, platform="kraken"))
    assert result.status_code == 302
    broken.refresh_from_db()
    assert broken.status == m.Status.ACTIVE
