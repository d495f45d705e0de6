"""`seed_demo` and `demo_logins`: the demo world, loaded twice, is the same world."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import requests
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from connections import lifecycle
from connections import models as m
from connections.management.commands import seed_demo
from connections.management.commands.seed_demo import CONNECTIONS, DEMO_LOGINS, DEMO_PASSWORD, placeholder_account_id
from connections.providers.bloquo import decode_api_key
from connections.providers.http import shared_session
from sandbox.models import BloquoKey, CoinifyUser, DapiConnection, Token, TurnqeyAuthorization
from tests.sandbox_client import control_headers

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture(autouse=True)
def _development(settings: Any) -> None:
    # pytest-django runs with DEBUG off; seed_demo is development-only.
    settings.DEBUG = True


def seed(**kwargs: Any) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


def snapshot() -> dict[str, Any]:
    """Every connections row (by model, as plain values) plus users and adviser assignments."""
    rows: dict[str, Any] = {}
    for model in apps.get_app_config("connections").get_models():
        values = model._base_manager.order_by("pk").values()
        # Encrypted columns read back as plaintext here, so equal snapshots
        # mean equal secrets too.
        rows[model._meta.label] = [dict(v) for v in values]
    rows["users"] = list(User.objects.order_by("pk").values("username", "password", "is_staff", "is_superuser"))
    rows["advisers"] = sorted(m.Household.advisers.through.objects.values_list("household_id", "user_id"))
    return rows


def test_running_twice_gives_the_same_rows() -> None:
    seed()
    first = snapshot()

    output = seed()

    assert snapshot() == first
    assert "nothing changed" in output


def test_the_demo_firm_has_its_people_and_households() -> None:
    seed()

    firm = m.Firm.objects.get(name="Demo Advisory")
    roles = dict(m.Membership.objects.filter(firm=firm).values_list("user__username", "role"))
    assert roles == {"adviser1": "adviser", "adviser2": "adviser", "firmadmin": "firm_admin"}
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    households = m.Household.objects.filter(firm=firm).annotate(
        n_clients=Count("clients", distinct=True), n_advisers=Count("advisers", distinct=True)
    )
    assert 7 <= households.count() <= 10
    assert all(1 <= h.n_clients <= 3 for h in households)
    shared = [h for h in households if h.n_advisers == 2]
    assert len(shared) == 1
    assert set(shared[0].advisers.values_list("username", flat=True)) == {"adviser1", "adviser2"}
    assert all(h.n_advisers >= 1 for h in households)


def test_every_demo_login_uses_the_development_password() -> None:
    seed()

    for login in DEMO_LOGINS:
        assert User.objects.get(username=login.username).check_password(DEMO_PASSWORD)


def test_every_provider_has_a_connection_in_every_status_and_every_reason_appears() -> None:
    seed()

    seen = set(m.Connection.objects.values_list("provider", "status"))
    for provider in m.Provider.values:
        for status in m.Status.values:
            assert (provider, status) in seen, (provider, status)
    reasons = set(m.Connection.objects.filter(status=m.Status.NEEDS_RECONNECT).values_list("reason", flat=True))
    assert reasons == {m.Reason.EXPIRED, m.Reason.REVOKED, m.Reason.CREDENTIALS_INVALID}


def test_credentials_follow_the_status() -> None:
    seed()

    with_credentials = set(m.Credential.objects.filter(connection__isnull=False).values_list("connection", flat=True))
    for connection in m.Connection.objects.all():
        has = connection.pk in with_credentials
        if connection.status in (m.Status.PENDING, m.Status.DISCONNECTED) or connection.provider == "turnqey":
            assert not has, connection
        else:
            assert has, connection


def test_connections_carry_accounts_deadlines_and_a_month_of_history() -> None:
    seed()
    now = timezone.now()

    for connection in m.Connection.objects.exclude(status=m.Status.PENDING):
        assert connection.accounts.exists(), connection
        assert all(a.balance > 0 for a in connection.accounts.all())
    assert not m.Account.objects.filter(connection__status=m.Status.PENDING).exists()
    for connection in m.Connection.objects.filter(status__in=[m.Status.ACTIVE, m.Status.DEGRADED]):
        assert connection.next_check_at
        assert connection.next_check_at > now - timedelta(minutes=1)
    assert not m.Connection.objects.filter(
        status__in=[m.Status.NEEDS_RECONNECT, m.Status.DISCONNECTED], next_check_at__isnull=False
    ).exists()
    assert m.Connection.objects.filter(reconnect_by__isnull=False).exists()
    events = m.ConnectionEvent.objects.filter(created_at__gte=now - timedelta(days=30))
    days_with_events = {e.date() for e in events.values_list("created_at", flat=True)}
    assert len(days_with_events) >= 25
    kinds = set(events.values_list("kind", flat=True))
    assert {"check_succeeded", "check_failed", "status_changed", "recovered", "disconnected"} <= kinds
    assert not m.ConnectionEvent.objects.filter(created_at__gt=now).exists()


def test_demo_provider_apps_follow_the_sandbox_keep_their_ids_and_get_a_new_secret_when_it_moves(
    settings: Any,
) -> None:
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:8000/sandbox"
    settings.PORTAL_BASE_URL = "http://127.0.0.1:8000"
    seed()
    before = {a.provider: (a.client_id, a.client_secret) for a in m.ProviderApp.objects.all()}

    settings.PORTAL_BASE_URL = "http://portal.test:9000"
    seed()

    apps_now = {a.provider: a for a in m.ProviderApp.objects.all()}
    assert set(apps_now) == set(m.Provider.values)
    for provider, app in apps_now.items():
        assert app.environment == m.Environment.SANDBOX
        assert app.base_url == f"http://127.0.0.1:8000/sandbox/{provider}"
        assert app.redirect_uri == f"http://portal.test:9000/connect/{provider}/callback/"
        assert app.client_id == before[provider][0]
        # The endpoints moved, so the old secret went with them (ProviderApp.save): a new one, never the old.
        assert before[provider][1] is None or app.client_secret != before[provider][1]
    # Each app holds what its provider uses: Coinify a partner id only, Bloquo
    # nothing (its key pairs are per connection).
    for provider in ("turnqey", "dapi"):
        assert apps_now[provider].client_id
        assert len(apps_now[provider].client_secret) >= 32
    assert apps_now["coinify"].client_id
    assert apps_now["coinify"].client_secret is None
    assert not apps_now["bloquo"].client_id
    assert apps_now["bloquo"].client_secret is None


def test_apps_are_registered_with_the_sandbox_when_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real_call_command = seed_demo.call_command

    def fake_call_command(name: str, *args: Any, **kwargs: Any) -> None:
        if name == "sandbox_register_app":
            calls.append(kwargs)
        else:
            real_call_command(name, *args, **kwargs)

    monkeypatch.setattr(seed_demo, "get_commands", lambda: {"sandbox_register_app": "sandbox"})
    monkeypatch.setattr(seed_demo, "call_command", fake_call_command)
    monkeypatch.setattr(seed_demo.apps, "is_installed", lambda name: True)

    seed()

    registered = {c["provider"]: c for c in calls}
    # Bloquo has no partner app to register.
    assert set(registered) == {"turnqey", "coinify", "dapi"}
    for provider, kwargs in registered.items():
        app = m.ProviderApp.objects.get(provider=provider)
        assert kwargs["client_id"] == app.client_id
        assert kwargs["client_secret"] == (app.client_secret or "")
        assert kwargs["redirect_uri"] == app.redirect_uri


def test_a_sandbox_without_its_registration_command_gets_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_demo, "get_commands", lambda: {})
    monkeypatch.setattr(seed_demo.apps, "is_installed", lambda name: True)
    err = StringIO()

    call_command("seed_demo", stdout=StringIO(), stderr=err)

    assert "lacks the commands sandbox_register_app, sandbox_create_subject" in err.getvalue()
    assert "the demo apps were not registered" in err.getvalue()
    assert m.ProviderApp.objects.count() == 4


def test_seed_demo_refuses_to_run_in_production(settings: Any) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG off"):
        seed()

    assert not User.objects.filter(username__in=[login.username for login in DEMO_LOGINS]).exists()
    assert not m.Firm.objects.exists()


def test_demo_logins_prints_the_portal_url_and_the_logins(settings: Any) -> None:
    settings.PORTAL_BASE_URL = "http://127.0.0.1:8000"
    seed()
    out = StringIO()

    call_command("demo_logins", stdout=out)

    text = out.getvalue()
    assert "http://127.0.0.1:8000/" in text
    assert DEMO_PASSWORD in text
    for login in DEMO_LOGINS:
        assert login.username in text


def test_demo_logins_prints_no_password_in_production(settings: Any) -> None:
    seed()
    settings.DEBUG = False
    out = StringIO()

    call_command("demo_logins", stdout=out)

    assert DEMO_PASSWORD not in out.getvalue()


# --- real sandbox subjects --------------------------------------------------------------

S = m.Status
WORKING = (S.ACTIVE, S.DEGRADED)


def sandbox_subjects() -> dict[str, int]:
    return {
        "turnqey": TurnqeyAuthorization.objects.count(),
        "coinify": CoinifyUser.objects.count(),
        "bloquo": BloquoKey.objects.count(),
        "dapi": DapiConnection.objects.count(),
        "tokens": Token.objects.count(),
    }


def without_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_demo.apps, "is_installed", lambda name: name != "sandbox")


def check_all(ids: list[int]) -> dict[int, lifecycle.CheckResult]:
    try:
        return {pk: lifecycle.connection_check(connection_id=pk, actor_label="test", force=True) for pk in sorted(ids)}
    finally:
        # No kept-alive socket of this test may outlive its live server.
        shared_session().close()


def test_connections_with_a_source_account_get_the_ids_and_secrets_of_real_sandbox_subjects() -> None:
    seed()

    backed = m.Connection.objects.filter(status__in=[*WORKING, S.NEEDS_RECONNECT])
    for connection in backed.filter(provider="coinify"):
        assert CoinifyUser.objects.filter(
            pk=int(connection.external_account_id), email=connection.client.email
        ).exists()
    for connection in backed.filter(provider="bloquo"):
        pair = decode_api_key(connection.credentials.get(kind="api_key").value)
        assert pair is not None
        assert BloquoKey.objects.get(customer_id=connection.external_account_id).client_id == pair[0]
    for connection in backed.filter(provider="dapi"):
        link = DapiConnection.objects.get(connection_id=connection.grouping["connectionID"])
        assert link.user_id == connection.external_account_id
    for connection in backed.filter(provider="turnqey"):
        authorization = TurnqeyAuthorization.objects.get(
            identity=str(connection.client.identity), platform=connection.platform
        )
        assert authorization.source_account_id == connection.external_account_id
        assert connection.grouping == {
            "collection": str(connection.household.turnqey_collection),
            "identity": str(connection.client.identity),
        }
        expected = "active" if connection.status in WORKING else connection.reason
        assert authorization.status == expected
    # Working Coinify connections hold only the offline token: their first check renews with it.
    kinds = set(
        m.Credential.objects.filter(connection__provider="coinify", connection__status__in=WORKING).values_list(
            "kind", flat=True
        )
    )
    assert kinds == {"offline"}


def test_a_second_run_creates_no_sandbox_subjects_and_keeps_every_credential() -> None:
    seed()
    subjects = sandbox_subjects()
    credentials = sorted(m.Credential.objects.values_list("connection_id", "kind", "value"))

    seed()

    assert sandbox_subjects() == subjects
    assert sorted(m.Credential.objects.values_list("connection_id", "kind", "value")) == credentials


def test_without_the_sandbox_connections_keep_placeholders_and_a_note_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandbox(monkeypatch)

    output = seed()

    assert "sandbox is not installed" in output
    assert sandbox_subjects() == dict.fromkeys(("turnqey", "coinify", "bloquo", "dapi", "tokens"), 0)
    for index, spec in enumerate(CONNECTIONS):
        connection = m.Connection.objects.get(
            client__name=next(h.clients[spec.client] for h in seed_demo.HOUSEHOLDS if h.reference == spec.household),
            provider=spec.provider,
            platform=spec.platform,
        )
        assert connection.external_account_id == placeholder_account_id(spec, index)


def test_refresh_sandbox_without_the_sandbox_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandbox(monkeypatch)

    with pytest.raises(CommandError, match="--refresh-sandbox needs the sandbox"):
        seed(refresh_sandbox=True)


def test_placeholders_from_a_sandbox_less_seed_are_replaced_by_real_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        without_sandbox(patch)
        seed()
    placeholders = dict(m.Connection.objects.values_list("pk", "external_account_id"))

    output = seed()

    assert "25 sandbox subjects" in output
    for connection in m.Connection.objects.filter(status__in=[*WORKING, S.NEEDS_RECONNECT]):
        assert connection.external_account_id != placeholders[connection.pk]
    assert m.Connection.objects.filter(status=S.PENDING, external_account_id="").count() == 4


@pytest.mark.django_db(transaction=True)
def test_seeded_connections_hold_up_when_checked_against_the_live_sandbox(live_server: Any, settings: Any) -> None:
    settings.PORTAL_BASE_URL = live_server.url
    settings.SANDBOX_BASE_URL = f"{live_server.url}/sandbox"
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

    # A forced check of a flagged connection finds the problem its reason names
    # (a refused Coinify password cannot show on a check: it is an expired sign-in then).
    results = check_all(flagged)
    for pk, result in results.items():
        assert result.status == S.NEEDS_RECONNECT, (seeded[pk], result)
        reason = m.Connection.objects.get(pk=pk).reason
        if (seeded[pk].provider, seeded[pk].reason) == ("coinify", m.Reason.CREDENTIALS_INVALID):
            assert reason == m.Reason.EXPIRED
        else:
            assert reason == seeded[pk].reason, seeded[pk]
    untouched = m.Connection.objects.filter(status__in=[S.PENDING, S.DISCONNECTED])
    assert {c.pk: c.status for c in untouched} == {
        pk: c.status for pk, c in seeded.items() if c.status in (S.PENDING, S.DISCONNECTED)
    }


@pytest.mark.django_db(transaction=True)
def test_refresh_sandbox_brings_the_demo_back_after_a_sandbox_reset(live_server: Any, settings: Any) -> None:
    settings.PORTAL_BASE_URL = live_server.url
    settings.SANDBOX_BASE_URL = f"{live_server.url}/sandbox"
    seed()
    working = list(m.Connection.objects.filter(status__in=WORKING).values_list("pk", flat=True))
    requests.post(
        f"{live_server.url}/sandbox/_control/reset", json={}, headers=control_headers(), timeout=10
    ).raise_for_status()
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
        connection_id__in=working, kind=m.ConnectionEvent.Kind.RECOVERED, actor_label="command:seed_demo"
    ).exists()
