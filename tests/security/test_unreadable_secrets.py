"""One secret that no key decrypts must not take down pages, and must be seen.

Attack: a ProviderApp's stored client secret (or a connection's token) was
written under a key the portal no longer has. Pages of every adviser using
that app keep working; ``/healthz`` says what is wrong; a check flags the app
(or the connection) in plain words instead of failing silently or forever.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.db import connection as db_connection
from django.test import override_settings
from django.urls import reverse

from connections import lifecycle, services
from connections import models as m
from connections.checks import encryption_keys_check
from tests.factories import CredentialFactory

from .conftest import CannedProvider, People, logged_in

FOREIGN_KEY = Fernet.generate_key()


def written_under_a_lost_key(model: type, field: str, pk: Any) -> None:
    """Store ciphertext that no configured key decrypts, as a restored backup from another key would."""
    token = Fernet(FOREIGN_KEY).encrypt(b"a secret from another key").decode()
    table, column = model._meta.db_table, model._meta.get_field(field).column
    with db_connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [token, pk])  # noqa: S608


def test_pages_of_every_adviser_on_the_app_keep_working(people: People, canned: CannedProvider) -> None:
    app = people.apps["turnqey"]
    written_under_a_lost_key(m.ProviderApp, "client_secret", app.pk)
    link = services.client_link_create(
        household=people.household, client=people.client, connection=people.connection, user=people.assigned
    )
    adviser, admin = logged_in(people.assigned), logged_in(people.firm_admin)

    for browser in (adviser, admin):
        assert browser.get(reverse("dashboard")).status_code == 200
        assert browser.get(reverse("attention_list")).status_code == 200
        assert browser.get(reverse("household_detail", args=[people.household.pk])).status_code == 200
        assert browser.get(reverse("connection_detail", args=[people.connection.pk])).status_code == 200
        assert browser.get(reverse("household_connect", args=[people.household.pk])).status_code == 200
    assert logged_in(people.superuser).get(reverse("admin:connections_providerapp_changelist")).status_code == 200
    assert adviser.get(link.url.replace("http://127.0.0.1:8000", "")).status_code == 200


def test_starting_a_flow_through_the_app_says_what_is_wrong_instead_of_failing(people: People) -> None:
    """The real Turnqey client needs the secret for the checksum: the start is refused with a page, not a 500."""
    app = people.apps["turnqey"]
    m.ProviderApp.objects.filter(pk=app.pk).update(client_id="tq-client", base_url="https://sandbox.turnqey.xyz")
    written_under_a_lost_key(m.ProviderApp, "client_secret", app.pk)
    adviser = logged_in(people.assigned)

    response = adviser.post(
        reverse("household_connect", args=[people.household.pk]),
        {"client": people.client.pk, "provider_app": app.pk, "platform": "coinbase"},
    )

    assert response.status_code == 502
    assert "could not start the authorization" in response.content.decode()


def test_healthz_reports_an_app_secret_no_key_decrypts(people: People, client: Any) -> None:
    assert client.get("/healthz").json()["secrets"] == "ok"
    written_under_a_lost_key(m.ProviderApp, "client_secret", people.apps["dapi"].pk)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["secrets"] == "unreadable"
    assert FOREIGN_KEY.decode() not in response.content.decode()


def test_a_check_through_the_app_flags_the_app_not_the_clients_connection(people: People) -> None:
    app = people.apps["turnqey"]
    written_under_a_lost_key(m.ProviderApp, "client_secret", app.pk)
    m.Connection.objects.filter(pk=people.connection.pk).update(next_check_at=None)

    result = lifecycle.connection_check(connection_id=people.connection.pk, force=True)

    assert result.outcome == lifecycle.Outcome.APP_CREDENTIALS_INVALID
    app = m.ProviderApp.objects.get(pk=app.pk)  # without its (unreadable) secret
    assert app.credentials_rejected_at is not None
    assert "cannot read this app's stored client secret" in app.last_error
    people.connection.refresh_from_db()
    assert people.connection.status == m.Status.ACTIVE, "the clients' connections are not flagged"


def test_a_connection_whose_token_no_key_decrypts_goes_to_a_visible_state(
    people: People, canned: CannedProvider
) -> None:
    credential = CredentialFactory(connection=people.connection, kind=m.Credential.Kind.ACCESS)
    written_under_a_lost_key(m.Credential, "value", credential.pk)

    result = lifecycle.connection_check(connection_id=people.connection.pk, force=True)

    people.connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.PERMANENT
    assert (people.connection.status, people.connection.reason) == (m.Status.NEEDS_RECONNECT, "credentials_unreadable")
    event = people.connection.events.get()
    assert "can no longer read this connection's stored credentials" in event.message
    page = logged_in(people.assigned).get(reverse("household_detail", args=[people.household.pk]))
    assert "can no longer read this connection" in page.content.decode()
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (["not-a-fernet-key"], "entry 1 of 1 is not a valid Fernet key"),
        ([Fernet.generate_key().decode(), "short"], "entry 2 of 2 is not a valid Fernet key"),
        ([" "], "TOKEN_ENCRYPTION_KEYS is empty"),
    ],
)
def test_a_malformed_key_list_fails_the_system_check_without_echoing_it(keys: list[str], problem: str) -> None:
    with override_settings(TOKEN_ENCRYPTION_KEYS=keys):
        errors = encryption_keys_check()
    assert [problem in error.msg for error in errors] == [True]
    assert all(key.strip() == "" or key not in errors[0].msg for key in keys)
