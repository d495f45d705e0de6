"""`seed_demo` and `demo_logins`: the demo world, loaded twice, is the same world."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from connections import models as m
from connections.management.commands import seed_demo
from connections.management.commands.seed_demo import DEMO_LOGINS, DEMO_PASSWORD

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


def test_demo_provider_apps_point_at_the_sandbox_and_keep_their_credentials(settings: Any) -> None:
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
        assert (app.client_id, app.client_secret) == before[provider]
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

    assert "no sandbox_register_app command" in err.getvalue()
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
