"""Django admin: every page renders, no page shows a secret, lists stay flat in queries."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.client import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import lifecycle, wording
from connections import models as m
from connections.admin import EVENTS_SHOWN_INLINE
from connections.demo.world import DEMO_PASSWORD
from connections.providers.base import AccountData, ConnectionState, ProviderClient
from connections.providers.errors import ProviderError
from tests.factories import (
    AccountFactory,
    ClientFactory,
    ConnectionEventFactory,
    ConnectionFactory,
    CredentialFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    ProviderAppFactory,
    UserFactory,
    registered_model_admins,
)
from tests.provider_seam import provider_clients_replace

pytestmark = pytest.mark.django_db

User = get_user_model()
REGISTERED = sorted(registered_model_admins(), key=lambda item: item[0]._meta.label)


def url_for(model: type, view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


@pytest.fixture
def seeded(settings: Any) -> None:
    settings.DEBUG = True  # seed_demo is development-only
    from io import StringIO

    call_command("seed_demo", stdout=StringIO(), stderr=StringIO())
    settings.DEBUG = False


@pytest.fixture
def superuser_client(client: Client) -> Client:
    user = User.objects.filter(username="admin").first() or UserFactory(
        username="admin", is_staff=True, is_superuser=True
    )
    client.force_login(user)
    return client


def seeded_secrets() -> list[str]:
    """Every secret plaintext the database holds, read through the ORM."""
    values = list(m.Credential.objects.values_list("value", flat=True))
    values += [s for s in m.ProviderApp.objects.values_list("client_secret", flat=True) if s]
    assert values, "the demo data should hold secrets"
    return values


def admin_request(user: Any) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_every_connections_model_is_in_admin() -> None:
    missing = [
        model._meta.label
        for model in apps.get_app_config("connections").get_models()
        if not admin.site.is_registered(model)
    ]

    assert missing == []


def test_every_changelist_and_change_page_renders_for_a_superuser(seeded: None, superuser_client: Client) -> None:
    failures = []
    for model, _ in REGISTERED:
        urls = [url_for(model, "changelist")]
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls += [url_for(model, "change", obj.pk), url_for(model, "history", obj.pk)]
        for url in urls:
            status = superuser_client.get(url).status_code
            if status != 200:
                failures.append((url, status))

    assert failures == []


def test_every_add_page_renders_or_is_refused_for_read_only_models(seeded: None, superuser_client: Client) -> None:
    superuser = User.objects.get(username="admin")
    failures = []
    for model, model_admin in REGISTERED:
        expected = 200 if model_admin.has_add_permission(admin_request(superuser)) else 403
        status = superuser_client.get(url_for(model, "add")).status_code
        if status != expected:
            failures.append((model._meta.label, status, expected))

    assert failures == []


def test_read_only_models_refuse_add_change_and_delete(seeded: None, superuser_client: Client) -> None:
    read_only = [
        m.ConnectionEvent,
        m.Credential,
        m.Account,
        m.AuthorizationRequest,
        m.ClientLink,
    ]
    for model in read_only:
        obj = model._default_manager.first()
        assert obj is not None, model
        assert superuser_client.get(url_for(model, "add")).status_code == 403
        assert superuser_client.post(url_for(model, "change", obj.pk), {}).status_code == 403
        assert superuser_client.post(url_for(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
        page = superuser_client.get(url_for(model, "change", obj.pk)).content.decode()
        assert 'name="_save"' not in page
        assert model._default_manager.filter(pk=obj.pk).exists()


def test_no_admin_page_shows_a_seeded_secret(seeded: None, superuser_client: Client) -> None:
    plaintexts = [*seeded_secrets(), DEMO_PASSWORD]
    urls = []
    for model, _ in REGISTERED:
        urls += [url_for(model, "changelist"), url_for(model, "add")]
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls += [url_for(model, "change", first.pk), url_for(model, "delete", first.pk)]
    # Every page of the rows that hold a secret, and of a connection of each
    # provider that holds one (their pages render credentials inline).
    one_per_kind = dict(m.Credential.objects.order_by("-pk").values_list("kind", "pk"))
    urls += [url_for(m.Credential, "change", pk) for pk in one_per_kind.values()]
    urls += [url_for(m.ProviderApp, "change", pk) for pk in m.ProviderApp.objects.values_list("pk", flat=True)]
    holding = m.Connection.objects.filter(credentials__isnull=False).order_by("provider", "pk")
    one_per_provider = {c.provider: c.pk for c in reversed(list(holding))}
    urls += [url_for(m.Connection, "change", pk) for pk in one_per_provider.values()]
    urls += [url_for(m.Connection, "delete", pk) for pk in one_per_provider.values()]
    urls.append(url_for(m.Credential, "changelist") + "?q=demo")

    leaks = []
    for url in urls:
        html = superuser_client.get(url).content.decode()
        leaks += [(url, secret[:6] + "…") for secret in plaintexts if secret in html]

    assert leaks == []


def test_credential_pages_mask_the_value_and_offer_no_input_for_it(seeded: None, superuser_client: Client) -> None:
    credential = m.Credential.objects.first()

    page = superuser_client.get(url_for(m.Credential, "change", credential.pk)).content.decode()

    assert "••••••••" in page
    assert 'name="value"' not in page


# --- ProviderApp: write-only client secret ---------------------------------------


def provider_app_form(app: m.ProviderApp, **overrides: str) -> dict[str, str]:
    data = {
        "provider": app.provider,
        "environment": app.environment,
        "name": app.name,
        "is_enabled": "on",
        "base_url": app.base_url,
        "connect_url": app.connect_url,
        "redirect_uri": app.redirect_uri,
        "client_id": app.client_id,
        "client_secret": "",
        "rate_limit_per_second": "20",
        "credentials-TOTAL_FORMS": "0",
        "credentials-INITIAL_FORMS": "0",
        "credentials-MIN_NUM_FORMS": "0",
        "credentials-MAX_NUM_FORMS": "0",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_provider_app_secret_input_renders_empty_and_says_a_secret_is_set(superuser_client: Client) -> None:
    app = ProviderAppFactory(client_secret="the-app-secret-value")

    page = superuser_client.get(url_for(m.ProviderApp, "change", app.pk)).content.decode()

    secret_input = re.search(r'<input[^>]*name="client_secret"[^>]*>', page)
    assert secret_input is not None
    assert 'type="password"' in secret_input.group(0)
    assert "value=" not in secret_input.group(0)
    assert "the-app-secret-value" not in page
    assert "A secret is set" in page


def test_provider_app_without_a_secret_says_so(superuser_client: Client) -> None:
    app = ProviderAppFactory(client_secret=None)

    page = superuser_client.get(url_for(m.ProviderApp, "change", app.pk)).content.decode()

    assert "No secret is set" in page


def test_saving_a_provider_app_with_an_empty_secret_keeps_the_current_one(superuser_client: Client) -> None:
    app = ProviderAppFactory(client_secret="keep-me-secret")

    response = superuser_client.post(
        url_for(m.ProviderApp, "change", app.pk), provider_app_form(app, client_id="new-client-id")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    app.refresh_from_db()
    assert app.client_id == "new-client-id"
    assert app.client_secret == "keep-me-secret"


def test_typing_a_new_provider_app_secret_replaces_it_and_never_logs_it(superuser_client: Client) -> None:
    app = ProviderAppFactory(client_secret="old-secret")

    response = superuser_client.post(
        url_for(m.ProviderApp, "change", app.pk), provider_app_form(app, client_secret="brand-new-secret")
    )

    assert response.status_code == 302
    app.refresh_from_db()
    assert app.client_secret == "brand-new-secret"
    history = " ".join(str(entry.change_message) for entry in LogEntry.objects.all())
    assert "brand-new-secret" not in history
    assert "old-secret" not in history


def test_a_provider_app_can_be_added_with_its_secret(
    superuser_client: Client, allow_hosts: Callable[..., None]
) -> None:
    # Dapi's docs name no host: a deployment lists its own (PROVIDER_HOSTS_DAPI_PRODUCTION).
    allow_hosts("dapi", "production", "api.dapi.example")
    data = provider_app_form(
        m.ProviderApp(
            provider="dapi",
            environment="production",
            name="Production",
            base_url="https://api.dapi.example",
            client_id="app-key",
        ),
        client_secret="dapi-app-secret",
    )

    response = superuser_client.post(url_for(m.ProviderApp, "add"), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert m.ProviderApp.objects.get(provider="dapi", name="Production").client_secret == "dapi-app-secret"


def test_provider_app_pages_show_its_health(superuser_client: Client) -> None:
    app = ProviderAppFactory(
        breaker_state=m.ProviderApp.BreakerState.OPEN,
        credentials_rejected_at=timezone.now(),
        last_error="Turnqey rejected the client id and secret (HTTP 401).",
    )

    listing = superuser_client.get(url_for(m.ProviderApp, "changelist")).content.decode()
    page = superuser_client.get(url_for(m.ProviderApp, "change", app.pk)).content.decode()

    assert "App credentials rejected since" in listing
    assert "Open" in page
    assert "Turnqey rejected the client id and secret (HTTP 401)." in page


# --- Connection -------------------------------------------------------------------


def test_connection_page_shows_recent_events_masked_credentials_and_accounts(superuser_client: Client) -> None:
    conn = ConnectionFactory()
    CredentialFactory(connection=conn, kind=m.Credential.Kind.REFRESH, value="refresh-plaintext")
    AccountFactory(connection=conn, name="Cold storage BTC")
    now = timezone.now()
    m.ConnectionEvent.objects.bulk_create(
        m.ConnectionEvent(
            connection=conn,
            kind="renewed",
            message=f"event number {i}",
            created_at=now - timedelta(minutes=i),
        )
        for i in range(EVENTS_SHOWN_INLINE + 5)
    )

    page = superuser_client.get(url_for(m.Connection, "change", conn.pk)).content.decode()

    assert "refresh-plaintext" not in page
    assert "Refresh token" in page
    assert "Cold storage BTC" in page
    assert "event number 0<" in page
    assert f"event number {EVENTS_SHOWN_INLINE - 1}<" in page
    assert f"event number {EVENTS_SHOWN_INLINE}<" not in page
    assert f"All {EVENTS_SHOWN_INLINE + 5} event(s)" in page
    history = superuser_client.get(url_for(m.ConnectionEvent, "changelist") + f"?connection__id__exact={conn.pk}")
    assert history.status_code == 200


def test_connection_status_cannot_be_edited_in_admin(superuser_client: Client) -> None:
    conn = ConnectionFactory(status=m.Status.ACTIVE, label="old label")
    page = superuser_client.get(url_for(m.Connection, "change", conn.pk)).content.decode()

    assert 'name="status"' not in page
    assert 'name="label"' in page


def test_a_connection_with_history_cannot_be_deleted_from_admin(superuser_client: Client) -> None:
    event = ConnectionEventFactory()

    superuser_client.post(url_for(m.Connection, "delete", event.connection_id), {"post": "yes"})

    assert m.Connection.objects.filter(pk=event.connection_id).exists()
    assert m.ConnectionEvent.objects.filter(pk=event.pk).exists()


def _probing(probed: list[str]) -> Any:
    """Real client classes whose probe answers 503 once per connection and records who was probed."""

    def replacement(cls: type[ProviderClient]) -> type[ProviderClient]:
        class Probing(cls):  # type: ignore[valid-type, misc]
            def renewal_due_at(self, connection: ConnectionState) -> None:
                return None

            def probe(self, *, connection: ConnectionState) -> list[AccountData]:
                probed.append(connection.external_account_id)
                raise ProviderError.transient("Provider (probe): had a server error (HTTP 503).", status_code=503)

        return Probing

    return replacement


def test_check_now_action_checks_each_selected_connection_now_as_the_admin(
    superuser_client: Client, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    probed: list[str] = []
    provider_clients_replace(monkeypatch, _probing(probed))
    first, second = ConnectionFactory(), ConnectionFactory(status=m.Status.NEEDS_RECONNECT, reason="revoked")
    pending = ConnectionFactory(status=m.Status.PENDING, external_account_id="", next_check_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            url_for(m.Connection, "changelist"),
            {"action": "check_now", "_selected_action": [first.pk, second.pk, pending.pk]},
            follow=True,
        )

    page = response.content.decode()
    assert "Check queued for 2 connection(s). 1 pending or disconnected connection(s) have nothing to check." in page
    assert sorted(probed) == sorted([first.external_account_id, second.external_account_id])
    events = m.ConnectionEvent.objects.filter(kind=m.ConnectionEvent.Kind.CHECK_FAILED).select_related("actor")
    assert sorted(e.connection_id for e in events) == sorted([first.pk, second.pk])
    assert {(e.actor.username, e.actor_label) for e in events} == {("admin", "admin")}
    assert {wording.actor_words(actor=e.actor, actor_label=e.actor_label) for e in events} == {"admin admin"}


# --- Query counts -------------------------------------------------------------------


def make_world() -> None:
    """One of every row the connections admin lists, with every relation filled."""
    firm = FirmFactory()
    # An unusable password: hashing a real one per user would dominate the test.
    advisers = [MembershipFactory(firm=firm, user__password="!").user for _ in range(2)]
    household = HouseholdFactory(firm=firm, advisers=advisers, turnqey_collection=None)
    client = ClientFactory(household=household)
    app = ProviderAppFactory(name=f"app-{secrets.token_hex(4)}")
    conn = ConnectionFactory(client=client, household=household, provider_app=app, created_by=advisers[0])
    CredentialFactory(connection=conn)
    CredentialFactory(connection=None, provider_app=app, kind=m.Credential.Kind.APP)
    AccountFactory(connection=conn)
    ConnectionEventFactory(connection=conn, actor=advisers[0])
    # A renewal as a scheduled check records it: the store's own row, the engine's own actor label.
    lifecycle.renewal_event(
        conn, status=conn.status, issued=[], held={}, reconnect_by=None, actor_label=wording.SCHEDULED_CHECK
    ).save()
    now = timezone.now()
    link = m.ClientLink.objects.create(
        token_hash=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        household=household,
        client=client,
        connection=conn,
        provider_app=app,
        platform="coinbase",
        sent_to=client.email,
        created_by=advisers[0],
        expires_at=now + timedelta(days=7),
    )
    m.AuthorizationRequest.objects.create(
        state_hash=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        provider_app=app,
        provider=app.provider,
        platform="coinbase",
        household=household,
        client=client,
        connection=conn,
        started_by=advisers[1],
        client_link=link,
        expires_at=now + timedelta(minutes=15),
    )
    m.PeriodicJobRun.objects.create(job=f"sweep-{secrets.token_hex(3)}", slot_start=now)


def changelist_query_counts(client: Client) -> dict[str, int]:
    counts = {}
    for model, _ in REGISTERED:
        if model._meta.app_label not in ("connections", "auth"):
            continue
        url = url_for(model, "changelist")
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts[model._meta.label] = len(queries)
    return counts


def test_changelist_query_counts_do_not_grow_with_rows(superuser_client: Client) -> None:
    make_world()
    few = changelist_query_counts(superuser_client)
    for _ in range(4):
        make_world()

    many = changelist_query_counts(superuser_client)

    assert many == few


def test_no_admin_list_shows_the_same_filter_twice(superuser_client: Client) -> None:
    for model, model_admin in REGISTERED:
        request = RequestFactory().get("/")
        request.user = User.objects.get(username="admin")
        changelist = model_admin.get_changelist_instance(request)  # type: ignore[attr-defined]
        titles = [spec.title for spec in changelist.filter_specs]
        assert len(titles) == len(set(titles)), (model._meta.label, titles)


def test_credentials_read_their_expiry_as_a_date_people_read() -> None:
    credential = CredentialFactory(expires_at=timezone.make_aware(timezone.datetime(2026, 12, 1, 14, 30)))
    assert str(credential) == "Access token, expires 1 Dec 2026, 14:30"


def test_the_periodic_task_form_has_no_inline_script_and_keeps_its_crontab_help(superuser_client: Client) -> None:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    crontab = CrontabSchedule.objects.create(minute="0", hour="4")
    task = PeriodicTask.objects.create(name="nightly", task="connections.housekeeping", crontab=crontab)
    page = superuser_client.get(
        reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    ).content.decode()
    inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", page)
    assert inline == []
    assert "js/periodic_task_crontab.js" in page
    assert 'id="readable-crontabs"' in page


def test_admin_event_pages_say_who_acted_in_plain_words_not_the_raw_actor_label(superuser_client: Client) -> None:
    event = ConnectionEventFactory(actor=None, actor_label=wording.SCHEDULED_CHECK, message="Credentials renewed.")

    inline = superuser_client.get(url_for(m.Connection, "change", event.connection.pk)).content.decode()
    change = superuser_client.get(url_for(m.ConnectionEvent, "change", event.pk)).content.decode()

    for page in (inline, change):
        assert "scheduled check" in page
        assert wording.SCHEDULED_CHECK not in page
