"""The provider rejects the portal's own app credentials: the app is flagged, admins told, connections untouched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from connections import lifecycle
from connections import models as m
from tests.factories import FirmFactory, HouseholdFactory, MembershipFactory, UserFactory

from .support import Portal, SandboxControl, connect_dapi, connect_turnqey, events, make_due

WRONG_SECRET = "wrong-app-secret-0f9e8d7c"
CONNECT: dict[str, Callable[..., m.Connection]] = {
    "turnqey": connect_turnqey,
    "dapi": connect_dapi,
}


@pytest.fixture
def people(portal: Portal) -> dict[str, Any]:
    firm = portal.household.firm
    admin = MembershipFactory(firm=firm, role=m.Membership.Role.FIRM_ADMIN, user=UserFactory(username="firmadmin")).user
    adviser = MembershipFactory(firm=firm, user=UserFactory(username="adviser")).user
    other_firm = FirmFactory()
    HouseholdFactory(firm=other_firm)
    outsider = MembershipFactory(
        firm=other_firm, role=m.Membership.Role.FIRM_ADMIN, user=UserFactory(username="otheradmin")
    ).user
    staff = UserFactory(username="operator", is_staff=True)
    return {"admin": admin, "adviser": adviser, "outsider": outsider, "staff": staff}


def _break_app_secret(app: m.ProviderApp) -> None:
    """An admin types a wrong secret; the cached app token (if any) goes with the old one."""
    app.client_secret = WRONG_SECRET
    app.save()
    m.Credential.objects.filter(provider_app=app).delete()
    lifecycle.clients_forget()


@pytest.mark.parametrize("provider", sorted(CONNECT))
def test_rejected_app_credentials_flag_the_app_alert_admins_once_and_leave_connections_alone(
    sandbox: SandboxControl, portal: Portal, people: dict[str, Any], settings: Any, provider: str
) -> None:
    settings.LIFECYCLE_APP_REJECTED_RETRY_SECONDS = 900
    first = CONNECT[provider](sandbox, portal)
    second = CONNECT[provider](sandbox, portal, platform="gemini" if provider == "turnqey" else "bitstamp")
    app = portal.apps[provider]
    _break_app_secret(app)
    mail.outbox.clear()
    before = timezone.now()

    make_due(first, second)
    result = lifecycle.connection_check(connection_id=first.pk)
    calls_after_first = len(sandbox.requests(provider))
    deferred = lifecycle.connection_check(connection_id=second.pk)

    app.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.APP_CREDENTIALS_INVALID
    assert app.credentials_rejected_at is not None
    assert app.last_error
    assert WRONG_SECRET not in app.last_error
    # Connections keep their status: the client has nothing to fix.
    for connection in (first, second):
        connection.refresh_from_db()
        assert connection.status == m.Status.ACTIVE
        assert connection.reason == ""
        assert connection.next_check_at is not None
        assert not events(connection, m.ConnectionEvent.Kind.STATUS_CHANGED)
        assert all(e.to_status != m.Status.NEEDS_RECONNECT for e in events(connection))
    first.refresh_from_db()
    assert first.next_check_at >= before + timedelta(seconds=900)
    # The second connection's check waits for the app to be fixed: no call at all.
    assert deferred.outcome == lifecycle.Outcome.DEFERRED
    assert len(sandbox.requests(provider)) == calls_after_first
    # One email per recipient, firm admins of the affected firm and staff only, once per incident.
    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted([people["admin"].email, people["staff"].email])
    for message in mail.outbox:
        assert WRONG_SECRET not in message.body
        assert WRONG_SECRET not in message.subject


@pytest.mark.parametrize("provider", sorted(CONNECT))
def test_fixing_the_app_credentials_clears_the_flag_on_the_next_check(
    sandbox: SandboxControl, portal: Portal, people: dict[str, Any], provider: str
) -> None:
    connection = CONNECT[provider](sandbox, portal)
    app = portal.apps[provider]
    good_secret = app.client_secret
    _break_app_secret(app)
    make_due(connection)
    lifecycle.connection_check(connection_id=connection.pk)

    app.refresh_from_db()
    app.client_secret = good_secret
    app.last_error_at = timezone.now() - timedelta(hours=1)  # past the wait after a rejection
    app.save()
    lifecycle.clients_forget()
    make_due(connection)
    result = lifecycle.connection_check(connection_id=connection.pk)

    app.refresh_from_db()
    connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.OK
    assert app.credentials_rejected_at is None
    assert connection.status == m.Status.ACTIVE
