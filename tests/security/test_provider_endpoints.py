"""A provider app's endpoints as an attacker with edit rights would use them: to collect secrets, or reach inside.

Whoever may change a ProviderApp could point its URLs at a host of their own
(the next check would send the app's client secret, its app token and every
connection's tokens there) or at an internal address (the worker would call
it). These tests try that through every door: the admin as a staff user with
change permission, a script calling ``full_clean()``, production settings,
and a row written straight into the database, past all validation, after
which a real check must send nothing anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import lifecycle
from connections import models as m
from connections.providers.base import AppConfig, IssuedCredential
from connections.providers.endpoints import allowed_hosts, host_table, url_refusal
from connections.providers.errors import ErrorKind, ProviderError
from connections.providers.turnqey import TurnqeyClient
from tests.factories import ProviderAppFactory, UserFactory
from tests.faults.support import (
    Portal,
    SandboxControl,
    connect_bloquo,
    connect_coinify,
    connect_dapi,
    connect_turnqey,
    portal_on_sandbox,
)
from tests.sandbox_client import sandbox_session

from .conftest import People, logged_in

# What an attacker would type instead of the provider's host.
ELSEWHERE = {
    "another host": "https://collector.attacker.example/turnqey",
    "a look-alike": "https://sandbox.turnqey.xyz.attacker.example",
    "credentials before the host": "https://sandbox.turnqey.xyz@attacker.example/",
    "a backslash parsers disagree on": "https://attacker.example\\@sandbox.turnqey.xyz/",
    "the cloud metadata address": "http://169.254.169.254/latest/meta-data",
    "an internal port": "http://127.0.0.1:6379",
}
# Internal addresses in the spellings a resolver accepts.
INTERNAL = (
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.8",
    "https://192.168.1.20:8443",
    "https://127.0.0.1:8000",
    "https://localhost",
    "https://metadata.google.internal",
    "https://redis",
    "https://2130706433",
    "https://0x7f.1",
    "https://[::1]",
    "https://[::ffff:127.0.0.1]",
)


def admin_change_url(app: m.ProviderApp) -> str:
    return reverse("admin:connections_providerapp_change", args=[app.pk])


def admin_form(app: m.ProviderApp, **overrides: str) -> dict[str, str]:
    """The change form as the page would post it, with ``overrides`` typed in."""
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


@pytest.fixture
def staff_editor(db: None) -> Client:
    """Staff, not a superuser: allowed to view and change provider apps, nothing more."""
    user = UserFactory(username="ops-editor", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="connections", codename__in=["view_providerapp", "change_providerapp"]
        )
    )
    return logged_in(user)


@pytest.fixture
def documented_app(db: None) -> m.ProviderApp:
    return ProviderAppFactory(
        provider="turnqey",
        environment="sandbox",
        name="documented",
        base_url="https://sandbox.turnqey.xyz",
        client_secret="turnqey-app-secret-to-keep",
    )


@pytest.fixture
def production(settings: Any) -> None:
    """The host rule as production applies it: strict (DEBUG off), and the sandbox off."""
    settings.PROVIDER_URLS_STRICT = True
    settings.SANDBOX_ENABLED = False


# --- Model validation: admin, forms and scripts -----------------------------------------------


@pytest.mark.parametrize("field_name", ["base_url", "connect_url"])
@pytest.mark.parametrize("attempt", list(ELSEWHERE))
def test_a_staff_editor_cannot_point_an_app_at_another_host(
    staff_editor: Client, documented_app: m.ProviderApp, field_name: str, attempt: str
) -> None:
    response = staff_editor.post(
        admin_change_url(documented_app), admin_form(documented_app, **{field_name: ELSEWHERE[attempt]})
    )

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field_name]
    stored = m.ProviderApp.objects.get(pk=documented_app.pk)
    assert (stored.base_url, stored.connect_url) == ("https://sandbox.turnqey.xyz", "")
    assert stored.client_secret == "turnqey-app-secret-to-keep"


def test_the_refusal_says_which_host_and_what_is_allowed(staff_editor: Client, documented_app: m.ProviderApp) -> None:
    response = staff_editor.post(
        admin_change_url(documented_app),
        admin_form(documented_app, base_url="https://collector.attacker.example/turnqey"),
    )

    [message] = response.context["adminform"].form.errors["base_url"]
    assert "points at collector.attacker.example" in message
    assert "not a Turnqey sandbox host" in message
    assert "sandbox.turnqey.xyz" in message


def test_a_script_calling_full_clean_is_refused(db: None) -> None:
    app = m.ProviderApp(
        provider="coinify",
        environment="production",
        name="scripted",
        base_url="https://collector.attacker.example/coinify",
        connect_url="https://collector.attacker.example/connect",
    )

    with pytest.raises(ValidationError) as info:
        app.full_clean()

    assert set(info.value.message_dict) == {"base_url", "connect_url"}
    assert "points at collector.attacker.example" in info.value.message_dict["base_url"][0]


def test_the_documented_host_of_each_environment_is_accepted(db: None, production: None) -> None:
    for provider, environment, url in [
        ("turnqey", "production", "https://api.turnqey.xyz"),
        ("turnqey", "sandbox", "https://sandbox.turnqey.xyz/"),
        ("coinify", "production", "https://app-api.coinify.com"),
        ("bloquo", "sandbox", "https://staging-api.bloquo.io"),
    ]:
        m.ProviderApp(provider=provider, environment=environment, name=provider, base_url=url).full_clean()


def test_a_host_documented_for_the_other_environment_is_refused(db: None) -> None:
    app = m.ProviderApp(provider="turnqey", environment="production", name="p", base_url="https://sandbox.turnqey.xyz")

    with pytest.raises(ValidationError) as info:
        app.full_clean()

    assert "not a Turnqey production host" in info.value.message_dict["base_url"][0]


def test_an_environment_variable_replaces_the_documented_hosts_of_its_pair_only(
    db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal import settings as portal_settings

    monkeypatch.setenv("PROVIDER_HOSTS_BLOQUO_PRODUCTION", "api.bloquo.example,eu.bloquo.example:8443")
    monkeypatch.setenv("PROVIDER_HOSTS_TURNQEY_SANDBOX", "")
    # As the settings module reads them at start-up.
    settings.PROVIDER_HOSTS = portal_settings.provider_hosts_from_environment()

    assert allowed_hosts("bloquo", "production") == ["api.bloquo.example", "eu.bloquo.example:8443"]
    assert url_refusal("https://eu.bloquo.example:8443", provider="bloquo", environment="production") is None
    # Set but empty: the documented host is no longer allowed either.
    assert allowed_hosts("turnqey", "sandbox") == []
    assert "PROVIDER_HOSTS_TURNQEY_SANDBOX" in (
        url_refusal("https://sandbox.turnqey.xyz", provider="turnqey", environment="sandbox") or ""
    )
    # Pairs no variable names keep what the provider documents.
    assert allowed_hosts("bloquo", "sandbox") == ["staging-api.bloquo.io"]
    assert allowed_hosts("turnqey", "production") == ["api.turnqey.xyz"]
    assert allowed_hosts("dapi", "production") == []


def test_each_provider_is_allowed_the_hosts_of_the_base_urls_its_client_documents(settings: Any) -> None:
    settings.PROVIDER_HOSTS = {}

    assert host_table() == {
        "bloquo": {"production": [], "sandbox": ["staging-api.bloquo.io"]},
        "coinify": {"production": ["app-api.coinify.com"], "sandbox": []},
        "dapi": {"production": [], "sandbox": []},
        "turnqey": {"production": ["api.turnqey.xyz"], "sandbox": ["sandbox.turnqey.xyz"]},
    }


def test_production_refuses_plain_http_even_to_the_providers_host(db: None, production: None) -> None:
    app = m.ProviderApp(provider="turnqey", environment="production", name="p", base_url="http://api.turnqey.xyz")

    with pytest.raises(ValidationError) as info:
        app.full_clean()

    assert "does not use https" in info.value.message_dict["base_url"][0]


@pytest.mark.parametrize("url", INTERNAL)
def test_production_refuses_internal_addresses_even_when_listed(
    db: None, production: None, allow_hosts: Callable[..., None], url: str
) -> None:
    # Listed by mistake (or by someone who could change the environment): still refused.
    allow_hosts("bloquo", "production", urlsplit(url).netloc)
    app = m.ProviderApp(provider="bloquo", environment="production", name="p", base_url=url)

    with pytest.raises(ValidationError) as info:
        app.full_clean()

    # Some spellings Django's URL check refuses too; the host rule names the reason either way.
    assert any("an internal address" in message for message in info.value.message_dict["base_url"])


def test_the_sandbox_url_is_accepted_only_while_the_sandbox_is_on(db: None, settings: Any) -> None:
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:8000/sandbox"
    app = m.ProviderApp(provider="dapi", environment="sandbox", name="s", base_url="http://127.0.0.1:8000/sandbox/dapi")
    app.full_clean()

    settings.SANDBOX_ENABLED = False
    with pytest.raises(ValidationError):
        app.full_clean()

    # On, but another port of the same machine is not the sandbox.
    settings.SANDBOX_ENABLED = True
    app.base_url = "http://127.0.0.1:8001/sandbox/dapi"
    with pytest.raises(ValidationError):
        app.full_clean()


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://collector.attacker.example/connect/dapi/callback/",
        "https://portal.example.com.attacker.example/connect/dapi/callback/",
        "https://portal.example.com:8443/connect/dapi/callback/",
        "https://portal.example.com@attacker.example/connect/dapi/callback/",
    ],
)
def test_a_redirect_uri_off_the_portals_own_host_is_refused(db: None, settings: Any, redirect_uri: str) -> None:
    assert "Refused: this URL" in dapi_redirect_refused(settings, redirect_uri)


def dapi_redirect_refused(settings: Any, redirect_uri: str) -> str:
    """What ``full_clean()`` says of a Dapi app sending browsers back to ``redirect_uri`` (its only error)."""
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    app = m.ProviderApp(
        provider="dapi",
        environment="sandbox",
        name="s",
        base_url="http://provider.test/dapi",
        redirect_uri=redirect_uri,
    )

    with pytest.raises(ValidationError) as info:
        app.full_clean()

    assert list(info.value.message_dict) == ["redirect_uri"]
    return str(info.value.message_dict["redirect_uri"][0])


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://portal.example.com/",
        "https://portal.example.com/connect/turnqey/callback/",
        "https://portal.example.com/connect/dapi/callback/elsewhere/",
        "https://portal.example.com/connect/dapi/callback",
    ],
)
def test_a_redirect_uri_to_any_other_page_of_the_portal_is_refused(db: None, settings: Any, redirect_uri: str) -> None:
    assert "is not the portal's Dapi callback (/connect/dapi/callback/" in dapi_redirect_refused(settings, redirect_uri)


def test_a_redirect_uri_on_the_portals_host_is_accepted_and_production_wants_https(
    db: None, settings: Any, allow_hosts: Callable[..., None]
) -> None:
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    allow_hosts("dapi", "production", "api.dapi.example")
    app = m.ProviderApp(
        provider="dapi",
        environment="production",
        name="p",
        base_url="https://api.dapi.example",
        redirect_uri="https://portal.example.com/connect/dapi/callback/",
    )
    app.full_clean()

    settings.PORTAL_BASE_URL = "http://portal.example.com"
    app.redirect_uri = "http://portal.example.com/connect/dapi/callback/"
    settings.PROVIDER_URLS_STRICT = False
    app.full_clean()
    settings.PROVIDER_URLS_STRICT = True
    with pytest.raises(ValidationError) as info:
        app.full_clean()
    assert "does not use https" in info.value.message_dict["redirect_uri"][0]


def test_a_staff_editor_cannot_send_redirects_to_another_host(
    staff_editor: Client, documented_app: m.ProviderApp, settings: Any
) -> None:
    settings.PORTAL_BASE_URL = "https://portal.example.com"

    response = staff_editor.post(
        admin_change_url(documented_app),
        admin_form(documented_app, redirect_uri="https://collector.attacker.example/connect/turnqey/callback/"),
    )

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["redirect_uri"]
    assert "points at collector.attacker.example" in message
    assert "portal.example.com" in message
    assert m.ProviderApp.objects.get(pk=documented_app.pk).redirect_uri == ""


# --- Changing an endpoint forgets the secret -----------------------------------------------------


def _app_token(app: m.ProviderApp) -> None:
    now = timezone.now()
    lifecycle.clients.DbAppTokenCache(app.pk).save(
        IssuedCredential(kind="app", value="cached-app-token", issued_at=now, expires_at=now + timedelta(hours=1))
    )


def test_changing_the_base_url_clears_the_secret_and_the_cached_app_token(
    documented_app: m.ProviderApp, allow_hosts: Callable[..., None]
) -> None:
    allow_hosts("turnqey", "sandbox", "sandbox-eu.turnqey.xyz")
    _app_token(documented_app)
    app = m.ProviderApp.objects.get(pk=documented_app.pk)

    app.base_url = "https://sandbox-eu.turnqey.xyz"
    app.save()

    stored = m.ProviderApp.objects.get(pk=app.pk)
    assert stored.base_url == "https://sandbox-eu.turnqey.xyz"
    assert stored.client_secret is None
    assert not m.Credential.objects.filter(provider_app=app, kind="app").exists()
    assert app.secret_cleared


@pytest.mark.parametrize("field_name", ["connect_url", "redirect_uri"])
def test_changing_the_browser_url_or_redirect_uri_clears_the_secret_too(
    documented_app: m.ProviderApp, field_name: str
) -> None:
    app = m.ProviderApp.objects.get(pk=documented_app.pk)
    setattr(app, field_name, "https://sandbox.turnqey.xyz/elsewhere")

    app.save(update_fields=[field_name, "updated_at"])

    assert m.ProviderApp.objects.get(pk=app.pk).client_secret is None


def test_a_secret_entered_with_the_endpoint_change_is_kept(documented_app: m.ProviderApp) -> None:
    app = m.ProviderApp.objects.get(pk=documented_app.pk)
    app.redirect_uri = "https://portal.example/connect/turnqey/callback/"
    app.client_secret = "a-new-secret-for-the-new-endpoint"

    app.save()

    assert m.ProviderApp.objects.get(pk=app.pk).client_secret == "a-new-secret-for-the-new-endpoint"


def test_other_changes_keep_the_secret_and_the_app_token(documented_app: m.ProviderApp) -> None:
    _app_token(documented_app)
    app = m.ProviderApp.objects.get(pk=documented_app.pk)
    app.name = "renamed"
    app.rate_limit_per_second = 5

    app.save()

    assert m.ProviderApp.objects.get(pk=app.pk).client_secret == "turnqey-app-secret-to-keep"
    assert m.Credential.objects.filter(provider_app=app, kind="app").exists()


def test_the_admin_says_the_secret_was_cleared_and_shows_where_calls_go(
    staff_editor: Client, documented_app: m.ProviderApp, allow_hosts: Callable[..., None]
) -> None:
    allow_hosts("turnqey", "sandbox", "sandbox-eu.turnqey.xyz")

    response = staff_editor.post(
        admin_change_url(documented_app),
        admin_form(documented_app, base_url="https://sandbox-eu.turnqey.xyz/v1"),
        follow=True,
    )

    page = response.content.decode()
    assert "the stored client secret was cleared" in page
    assert m.ProviderApp.objects.get(pk=documented_app.pk).client_secret is None
    listing = staff_editor.get(reverse("admin:connections_providerapp_changelist")).content.decode()
    assert "https://sandbox-eu.turnqey.xyz" in listing


def test_the_admin_typing_the_secret_with_the_change_keeps_it(
    staff_editor: Client, documented_app: m.ProviderApp, allow_hosts: Callable[..., None]
) -> None:
    allow_hosts("turnqey", "sandbox", "sandbox-eu.turnqey.xyz")

    staff_editor.post(
        admin_change_url(documented_app),
        # The same secret typed again counts: it was entered for the new endpoint.
        admin_form(
            documented_app, base_url="https://sandbox-eu.turnqey.xyz", client_secret="turnqey-app-secret-to-keep"
        ),
    )

    stored = m.ProviderApp.objects.get(pk=documented_app.pk)
    assert (stored.base_url, stored.client_secret) == ("https://sandbox-eu.turnqey.xyz", "turnqey-app-secret-to-keep")


# --- A row written past validation: the call is refused, nothing is sent -----------------------


@dataclass
class Collector:
    """A server of the attacker's, recording every request that reaches it."""

    url: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def collector() -> Iterator[Collector]:
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Record(BaseHTTPRequestHandler):
        def _record(self) -> None:
            seen.append((self.command, self.path, dict(self.headers)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = _record

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Collector(url=f"http://127.0.0.1:{server.server_address[1]}", seen=seen)
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any) -> Iterator[SandboxControl]:
    with sandbox_session(live_server.url, settings) as control:
        yield control


@pytest.fixture
def portal(sandbox: SandboxControl) -> Portal:
    return portal_on_sandbox(sandbox)


CONNECT: dict[str, Callable[[SandboxControl, Portal], m.Connection]] = {
    "turnqey": connect_turnqey,
    "coinify": connect_coinify,
    "bloquo": connect_bloquo,
    "dapi": connect_dapi,
}


@pytest.mark.parametrize("provider", sorted(CONNECT))
def test_a_row_forced_to_another_host_makes_the_next_check_send_nothing_and_say_why(
    sandbox: SandboxControl, portal: Portal, collector: Collector, provider: str
) -> None:
    connection = CONNECT[provider](sandbox, portal)
    app = portal.apps[provider]
    credentials_before = set(m.Credential.objects.filter(connection=connection).values_list("kind", "value"))
    # Straight into the table: no clean(), no save(), as a compromised script or a bad migration would.
    m.ProviderApp.objects.filter(pk=app.pk).update(base_url=f"{collector.url}/{provider}", updated_at=timezone.now())
    lifecycle.clients_forget()

    result = lifecycle.connection_check(connection_id=connection.pk, force=True)

    assert collector.seen == []
    assert result.outcome == lifecycle.Outcome.APP_CREDENTIALS_INVALID
    app.refresh_from_db()
    assert app.credentials_rejected_at is not None
    assert "nothing was sent" in app.last_error
    assert "points at 127.0.0.1" in app.last_error
    connection.refresh_from_db()
    assert connection.status == m.Status.ACTIVE  # the app's problem, never the client's
    assert set(m.Credential.objects.filter(connection=connection).values_list("kind", "value")) == credentials_before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field_name", "where"),
    [
        ("connect_url", "another host"),
        ("redirect_uri", "another host"),
        ("redirect_uri", "another page of the portal"),
    ],
)
def test_a_browser_is_never_sent_anywhere_else_by_a_forced_connect_url_or_redirect_uri(
    people: People, collector: Collector, settings: Any, field_name: str, where: str
) -> None:
    app = people.apps["dapi"]
    forced = {
        ("connect_url", "another host"): collector.url,
        ("redirect_uri", "another host"): f"{collector.url}/connect/dapi/callback/",
        ("redirect_uri", "another page of the portal"): f"{settings.PORTAL_BASE_URL}/connect/turnqey/callback/",
    }[(field_name, where)]
    m.ProviderApp.objects.filter(pk=app.pk).update(**{field_name: forced}, updated_at=timezone.now())
    adviser = logged_in(people.assigned)

    response = adviser.post(
        reverse("household_connect", args=[people.household.pk]),
        {"client": people.client.pk, "provider_app": app.pk, "platform": "binance"},
    )

    assert response.status_code == 502
    assert "Location" not in response
    assert not m.AuthorizationRequest.objects.exists()
    assert collector.seen == []


def test_a_client_refuses_to_send_a_redirect_uri_that_is_not_the_portals_callback(settings: Any) -> None:
    from connections.providers.dapi import DapiClient

    settings.PORTAL_BASE_URL = "https://portal.example.com"
    client = DapiClient(
        AppConfig(
            provider="dapi",
            environment="sandbox",
            base_url="http://provider.test/dapi",
            client_id="dapi-app-key",
            redirect_uri="https://collector.attacker.example/connect/dapi/callback/",
        )
    )

    with pytest.raises(ProviderError) as info:
        client.start_authorization(state="st", platform="binance", identity="", grouping={}, redirect_uri="")

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert "redirect URI points at collector.attacker.example" in info.value.message
    assert "st" not in info.value.message.split()
    started = client.start_authorization(
        state="st",
        platform="binance",
        identity="",
        grouping={},
        redirect_uri="https://portal.example.com/connect/dapi/callback/",
    )
    assert "redirectUri=https%3A%2F%2Fportal.example.com%2Fconnect%2Fdapi%2Fcallback%2F" in started.redirect_url


def test_the_admin_shows_a_forced_row_as_refused(staff_editor: Client, documented_app: m.ProviderApp) -> None:
    m.ProviderApp.objects.filter(pk=documented_app.pk).update(base_url="https://collector.attacker.example/x")

    listing = staff_editor.get(reverse("admin:connections_providerapp_changelist")).content.decode()

    assert "https://collector.attacker.example (refused: nothing is sent)" in listing


@pytest.mark.parametrize("url", INTERNAL)
def test_a_client_refuses_an_internal_address_in_any_spelling_before_sending(production: None, url: str) -> None:
    # Past the model (a row written directly), the client's own check is all that stands.
    client = TurnqeyClient(AppConfig(provider="turnqey", environment="production", base_url=url, client_id="c"))

    with pytest.raises(ProviderError) as info:
        client.app_token()

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert "nothing was sent" in info.value.message
    assert "an internal address" in info.value.message
