"""`seed_demo` from an empty database: without the sandbox, half-installed, in production, for any provider."""

from __future__ import annotations

import itertools
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from connections import models as m
from connections.demo import seed as demo_seed
from connections.demo import world
from connections.demo.sources import placeholder_account_id
from connections.demo.world import DEMO_LOGINS, HOUSEHOLDS, ConnectionSpec
from connections.providers import registry
from tests.seed_demo_support import sandbox_subjects, seed, without_sandbox

pytestmark = pytest.mark.django_db

User = get_user_model()
S = m.Status
R = m.Reason
K = m.ConnectionEvent.Kind


@pytest.fixture(autouse=True)
def _development(settings: Any) -> None:
    # pytest-django runs with DEBUG off; seed_demo is development-only.
    settings.DEBUG = True


def test_seed_demo_refuses_to_run_in_production(settings: Any) -> None:
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG off"):
        seed()

    assert not User.objects.filter(username__in=[login.username for login in DEMO_LOGINS]).exists()
    assert not m.Firm.objects.exists()


def test_demo_provider_apps_follow_the_sandbox_keep_their_ids_and_get_a_new_secret_when_it_moves(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_sandbox(monkeypatch)  # what the apps hold does not depend on it, and it is quicker
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
    # Each app holds what its provider issues a partner: Coinify a partner id
    # only, Bloquo nothing (its key pairs are per connection).
    for provider in ("turnqey", "dapi"):
        assert apps_now[provider].client_id
        assert len(apps_now[provider].client_secret) >= 32
    assert apps_now["coinify"].client_id
    assert apps_now["coinify"].client_secret is None
    assert not apps_now["bloquo"].client_id
    assert apps_now["bloquo"].client_secret is None


def test_apps_are_registered_with_the_sandbox_when_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real_call_command = demo_seed.call_command

    def fake_call_command(name: str, *args: Any, **kwargs: Any) -> None:
        if name == "sandbox_register_app":
            calls.append(kwargs)
        else:
            real_call_command(name, *args, **kwargs)

    monkeypatch.setattr(demo_seed, "get_commands", lambda: {"sandbox_register_app": "sandbox"})
    monkeypatch.setattr(demo_seed, "call_command", fake_call_command)
    monkeypatch.setattr(demo_seed.apps, "is_installed", lambda name: True)

    seed()

    registered = {c["provider"]: c for c in calls}
    # Bloquo has no partner app to register.
    assert set(registered) == {"turnqey", "coinify", "dapi"}
    for provider, kwargs in registered.items():
        app = m.ProviderApp.objects.get(provider=provider)
        assert kwargs["client_id"] == app.client_id
        assert kwargs["client_secret"] == (app.client_secret or "")
        assert kwargs["redirect_uri"] == app.redirect_uri


def test_a_sandbox_without_its_commands_gets_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_seed, "get_commands", lambda: {})
    monkeypatch.setattr(demo_seed.apps, "is_installed", lambda name: True)
    err = StringIO()

    call_command("seed_demo", stdout=StringIO(), stderr=err)

    assert "lacks the commands sandbox_register_app, sandbox_grant" in err.getvalue()
    assert "the demo apps were not registered" in err.getvalue()
    assert m.ProviderApp.objects.count() == 4


def test_without_the_sandbox_connections_hold_placeholders_and_a_note_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandbox(monkeypatch)

    output = seed()

    assert "sandbox is not installed" in output
    assert sandbox_subjects() == dict.fromkeys(("turnqey", "coinify", "bloquo", "dapi"), 0)
    assert not m.Credential.objects.filter(connection__isnull=False).exists()
    for connection in m.Connection.objects.exclude(status=S.PENDING):
        assert connection.external_account_id == placeholder_account_id(connection)
        assert connection.accounts.exists()
    # The same statuses and reasons as with the sandbox, decided by the same rules.
    assert set(m.Connection.objects.values_list("provider", "status", "reason")) == {
        (spec.provider, spec.status, spec.reason) for spec in world.CONNECTIONS
    }
    assert not m.Connection.objects.filter(status=S.NEEDS_RECONNECT).exclude(consecutive_failures=0).exists()


def test_refresh_sandbox_without_the_sandbox_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    without_sandbox(monkeypatch)

    with pytest.raises(CommandError, match="--refresh-sandbox needs the sandbox"):
        seed(refresh_sandbox=True)


def test_placeholders_from_a_sandbox_less_seed_are_replaced_by_real_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        without_sandbox(patch)
        seed()
    placeholders = dict(m.Connection.objects.values_list("pk", "external_account_id"))
    backed = m.Connection.objects.filter(status__in=[S.ACTIVE, S.DEGRADED, S.NEEDS_RECONNECT])

    output = seed()

    assert f"{backed.count()} sandbox subjects" in output
    for connection in backed:
        assert connection.external_account_id != placeholders[connection.pk]
    assert m.Connection.objects.filter(status=S.PENDING, external_account_id="").count() == 4
    working = m.Connection.objects.filter(status__in=[S.ACTIVE, S.DEGRADED]).exclude(provider="turnqey")
    assert all(connection.credentials.exists() for connection in working)


# --- every provider, one code path ------------------------------------------------------------

# A life for each status, given to every provider in the registry alike.
STORIES: tuple[tuple[str, str], ...] = (
    (S.ACTIVE, ""),
    (S.DEGRADED, R.TRANSIENT),
    (S.NEEDS_RECONNECT, R.REVOKED),  # the one reason every provider's checks can come to
    (S.DISCONNECTED, ""),
    (S.PENDING, ""),
    (S.PENDING, R.AUTHORIZATION_ABANDONED),
)
# One client per story (a provider's connections share its first platform).
STORY_CLIENTS = [(h.reference, i) for h in HOUSEHOLDS for i in range(len(h.clients))][: len(STORIES)]


def runs(sequence: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``sequence`` with repeats in a row counted once (how long an outage lasts depends on the clock)."""
    return [item for item, _ in itertools.groupby(sequence)]


def test_every_provider_in_the_registry_lives_the_same_story_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = tuple(
        ConnectionSpec(household, client, provider, cls.platforms[0], status, reason, story=f"{status}/{reason}")
        for provider, cls in registry.PROVIDERS.items()
        for (household, client), (status, reason) in zip(STORY_CLIENTS, STORIES, strict=True)
    )
    monkeypatch.setattr(world, "CONNECTIONS", specs)
    names = {(h.reference, i): name for h in HOUSEHOLDS for i, name in enumerate(h.clients)}
    expected = {(names[(s.household, s.client)], s.provider): s for s in specs}

    seed()

    by_story: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for connection in m.Connection.objects.select_related("client"):
        spec = expected[(connection.client.name, connection.provider)]
        assert (connection.status, connection.reason) == (spec.status, spec.reason), connection
        # What happened, and who did it; a provider's renewals are its client's own schedule.
        history = [
            (e.kind, e.from_status, e.to_status, e.reason, e.actor_label, e.actor_id is not None)
            for e in connection.events.exclude(kind=K.RENEWED).order_by("created_at", "id")
        ]
        by_story.setdefault(spec.story, {})[connection.provider] = runs(history)
    assert len(by_story) == len(STORIES)
    for story, histories in by_story.items():
        assert set(histories) == set(registry.PROVIDERS), story
        first = next(iter(histories.values()))
        assert all(history == first for history in histories.values()), (story, histories)
