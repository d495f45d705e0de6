"""A household reconnect request end to end against the sandbox, with the portal's real provider clients.

Three of one client's connections are revoked at their providers (two Coinify
sign-ins and Coinbase through Turnqey). The adviser asks once: one email. The
client fixes two from the link, leaves, comes back in a fresh browser with
the same link and fixes the third; the request completes and no reminder is
ever sent. The client's browser is Django's test client; the provider pages
are the sandbox's, over real HTTP.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core import mail
from django.test import Client as Browser

from connections import jobs, lifecycle, services
from connections import models as m
from tests.e2e.support import COINIFY_PARTNER, Clock, connect_turnqey, consent, fresh
from tests.sandbox_client import Portal, SandboxControl, pending_connection

from .conftest import open_request, request_path

pytestmark = pytest.mark.usefixtures("live_provider_http")


@pytest.fixture
def live_provider_http() -> Any:
    yield
    from connections.providers.transport import shared_session

    shared_session().close()


def _coinify(sandbox: SandboxControl, portal: Portal) -> tuple[m.Connection, dict[str, str]]:
    """A Coinify connection made with an email and password the test keeps (the client types them again later)."""
    fields = {"email": f"client-{uuid.uuid4().hex[:8]}@example.test", "password": secrets.token_urlsafe(12)}
    sandbox.subject("coinify", **fields, partner_id=COINIFY_PARTNER)
    connection = pending_connection(portal, "coinify", "coinify")
    grant = lifecycle.client_for_app(app=portal.apps["coinify"]).connect_with_credentials(
        fields=fields, platform="coinify"
    )
    connection = lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect", actor_label="e2e:connect")
    return connection, fields


def _break(connection: m.Connection) -> None:
    lifecycle.connection_check(connection_id=connection.pk, force=True)
    assert fresh(connection).status == m.Status.NEEDS_RECONNECT, fresh(connection).last_error


def test_three_broken_connections_one_email_fixed_in_two_visits_and_never_reminded(
    sandbox: SandboxControl, portal: Portal, clock: Clock, adviser: Any
) -> None:
    first, first_login = _coinify(sandbox, portal)
    second, second_login = _coinify(sandbox, portal)
    coinbase = connect_turnqey(portal, platform="coinbase")
    for connection in (first, second):
        assert sandbox.act("coinify", "revoke", user_id=int(connection.external_account_id)) >= 1
    assert sandbox.act("turnqey", "revoke", identity=str(portal.client.identity), platform="coinbase") >= 1
    for connection in (first, second, coinbase):
        _break(connection)
    mail.outbox.clear()

    results = services.reconnect_requests_create(households=[portal.household], user=adviser)

    assert [r.outcome for r in results] == ["sent"]
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == [portal.client.email]
    for source in ("Coinify", "Coinbase via Turnqey"):
        assert source in email.body
    request = results[0].request
    assert request is not None
    assert request.items.count() == 3

    # First visit: the Coinify sign-in, then Coinbase through Turnqey's consent page.
    browser = Browser()
    page, opened = open_request(browser, email)
    assert opened.pk == request.pk
    assert page.content.decode().count(">Reconnect<") == 3
    items = {item.connection_id: item for item in request.items.all()}
    fix_first = f"/requests/{request.pk}/fix/{items[first.pk].pk}/"
    assert browser.get(fix_first).status_code == 200
    done = browser.post(fix_first, first_login)
    assert done.status_code == 200, done.content.decode()[:2000]
    assert "Back to your list" in done.content.decode()

    to_turnqey = browser.post(f"/requests/{request.pk}/fix/{items[coinbase.pk].pk}/")
    assert to_turnqey.status_code == 302
    params = consent(to_turnqey["Location"])
    assert params.get("status") == "success", params
    callback = browser.get(f"/connect/turnqey/callback/?{urlencode(params)}")
    assert callback.status_code == 200, callback.content.decode()[:2000]
    assert "Back to your list" in callback.content.decode()

    # The client leaves. A day later, in another browser, the same emailed link shows what is left.
    clock.advance(timedelta(days=1))
    later = Browser()
    page, _ = open_request(later, email)
    text = page.content.decode()
    assert "2 of 3 done" in text
    assert fresh(first).status == fresh(coinbase).status == m.Status.ACTIVE
    fix_second = f"/requests/{request.pk}/fix/{items[second.pk].pk}/"
    assert later.post(fix_second, second_login).status_code == 200

    finished = later.get(f"/requests/{request.pk}/")
    assert "everything is reconnected" in finished.content.decode()
    request.refresh_from_db()
    assert request.status == m.ReconnectRequest.RequestStatus.DONE
    assert {item.status for item in request.items.all()} == {m.ReconnectRequestItem.ItemStatus.DONE}
    assert fresh(second).status == m.Status.ACTIVE

    # The reminder days come and go: nothing more reaches the client.
    for _ in range(8):
        clock.advance(timedelta(days=1))
        jobs.reminders_run()
    assert [message.to for message in mail.outbox].count([portal.client.email]) == 1
    request.refresh_from_db()
    assert request.reminders_sent == 0
    # And the emailed link now says there is nothing left to do.
    gone = Browser().get(request_path(email))
    assert gone.status_code == 410
    assert "nothing left to do" in gone.content.decode()
