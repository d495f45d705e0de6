"""A credential the provider declared dead is never sent again, by anyone.

Coinify counts a reused refresh token as a replay (reuse detection). Once a
renewal came back ``invalid_grant``, the connection needs the client, and no
check a person forces (Check now, admin's action, ``check_connections
--all``) may send that token again.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management import call_command

from connections import models as m
from connections import services
from tests.factories import MembershipFactory, UserFactory

from .support import Beat, Clock, Portal, SandboxControl, connect_coinify, credential, fresh


def test_a_refresh_token_the_provider_refused_is_never_sent_again(
    sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat, django_capture_on_commit_callbacks: object
) -> None:
    connection = connect_coinify(sandbox, portal)
    access = credential(connection, m.Credential.Kind.ACCESS)
    assert access is not None
    assert access.expires_at is not None
    assert sandbox.act("coinify", "revoke", user_id=connection.external_account_id) >= 1

    clock.move_to(access.expires_at - timedelta(minutes=1))  # the renewal is due
    beat.tick()
    flagged = fresh(connection)
    assert (flagged.status, flagged.reason) == (m.Status.NEEDS_RECONNECT, m.Reason.REVOKED)
    refreshes = sandbox.requests("coinify", path="/auth")
    assert [row["grant_type"] for row in refreshes][-1] == "refresh_token"
    assert not flagged.credentials.filter(kind=m.Credential.Kind.REFRESH).exists()

    bookmark = sandbox.last_request_id()
    adviser = MembershipFactory(user=UserFactory(username="forcing-adviser")).user
    services.connection_check_now(connection=flagged, user=adviser)
    services.connections_check_enqueue(connection_ids=[flagged.pk])
    call_command("check_connections", "--all", "--no-color", stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert sandbox.requests("coinify", path="/auth", after=bookmark) == []
    still = fresh(connection)
    assert (still.status, still.reason) == (m.Status.NEEDS_RECONNECT, m.Reason.REVOKED)
