"""The sandbox behind a live server, and connections made on it through the real provider clients.

Shared by the fault-tolerance and security suites. Everything goes over HTTP
to the live server (the control API under ``/sandbox/_control/``, the
simulated providers beneath ``/sandbox/<provider>/``); nothing here imports
the sandbox, so these tests meet the providers the way the portal does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from django.db import connection as db_connection
from django.utils import timezone

from connections import lifecycle, services
from connections import models as m
from connections.providers.base import Grant
from tests.factories import ClientFactory, HouseholdFactory
from tests.sandbox_client import AppIds, Portal, SandboxControl, pending_connection, sandbox_apps

COINIFY_PARTNER = "partner-4b43-9d5c"
TURNQEY_CLIENT = "tq-client-portal"
DAPI_APP_KEY = "dapi-app-key-portal"
APP_IDS = AppIds(turnqey=TURNQEY_CLIENT, coinify=COINIFY_PARTNER, dapi=DAPI_APP_KEY)


def portal_on_sandbox(
    sandbox: SandboxControl,
    *,
    secrets: Mapping[str, str] | None = None,
    redirect_base: str = "http://testserver",
    household: m.Household | None = None,
) -> Portal:
    """ProviderApps for the four providers on ``sandbox``, registered there, without a rate limit.

    ``secrets`` may set the Turnqey client secret and the Dapi app secret
    (keys ``turnqey``, ``dapi``); the sandbox is told the same ones.
    """
    secrets = dict(secrets or {})
    secrets.setdefault("turnqey", f"tq-secret-{uuid.uuid4().hex}")
    secrets.setdefault("dapi", f"dapi-secret-{uuid.uuid4().hex}")
    household = household or HouseholdFactory()
    client = ClientFactory(household=household)
    apps = sandbox_apps(
        sandbox,
        ids=APP_IDS,
        turnqey_secret=secrets["turnqey"],
        dapi_secret=secrets["dapi"],
        name="sandbox",
        redirect_base=redirect_base,
        rate_limit_per_second=0,
    )
    lifecycle.clients_forget()
    return Portal(household=household, client=client, apps=apps)


def connect_coinify(
    sandbox: SandboxControl, portal: Portal, *, email: str | None = None, password: str = "pw-1", offline: bool = False
) -> m.Connection:
    """A Coinify connection made with the client's email and password (or their offline token)."""
    email = email or f"client-{uuid.uuid4().hex[:8]}@example.test"
    user = sandbox.subject("coinify", email=email, password=password, partner_id=COINIFY_PARTNER)
    fields = {"offline_token": user["offline_token"]} if offline else {"email": email, "password": password}
    return services.credentials_connect(
        provider_app=portal.apps["coinify"],
        platform="coinify",
        household=portal.household,
        client=portal.client,
        fields=fields,
    )


def connect_bloquo(sandbox: SandboxControl, portal: Portal, *, client_secret: str | None = None) -> m.Connection:
    pair = sandbox.subject("bloquo", **({"client_secret": client_secret} if client_secret else {}))
    return services.credentials_connect(
        provider_app=portal.apps["bloquo"],
        platform="bloquo",
        household=portal.household,
        client=portal.client,
        fields={"clientId": pair["client_id"], "clientSecret": pair["client_secret"]},
    )


def _grant_onto_pending(portal: Portal, provider: str, platform: str, grant: Grant) -> m.Connection:
    connection = pending_connection(portal, provider, platform)
    return lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect", actor_label="test")


def connect_turnqey(sandbox: SandboxControl, portal: Portal, *, platform: str = "coinbase") -> m.Connection:
    """A Turnqey connection, as if the client had approved at the consent page."""
    identity = str(portal.client.identity)
    granted = sandbox.subject("turnqey", client=TURNQEY_CLIENT, identity=identity, platform=platform)
    client = lifecycle.client_for_app(app=portal.apps["turnqey"])
    grant = client.complete_authorization(
        params={
            "state": "s",
            "identity": identity,
            "collection": granted["collection"],
            "platform": platform,
            "status": "success",
        },
        platform=platform,
        identity=identity,
    )
    return _grant_onto_pending(portal, "turnqey", platform, grant)


def connect_dapi(sandbox: SandboxControl, portal: Portal, *, platform: str = "binance") -> m.Connection:
    """A Dapi connection, as if the client had signed in on the Connect page."""
    login = sandbox.subject("dapi", app_key=DAPI_APP_KEY, username=f"user-{uuid.uuid4().hex[:6]}")
    client = lifecycle.client_for_app(app=portal.apps["dapi"])
    grant = client.complete_authorization(
        params={
            "state": "s",
            "accessCode": login["access_code"],
            "connectionID": login["connection_id"],
            "userSecret": login["user_secret"],
            "userID": login["user_id"],
            "tokenID": login["token_id"],
        },
        platform=platform,
        identity=str(portal.client.identity),
    )
    return _grant_onto_pending(portal, "dapi", platform, grant)


def make_due(*connections: m.Connection, at: Any = None) -> None:
    """Schedule ``connections`` for a check now (or at ``at``)."""
    m.Connection.objects.filter(pk__in=[c.pk for c in connections]).update(
        next_check_at=at or timezone.now(), lease_until=None, lease_owner=""
    )


def events(connection: m.Connection, *kinds: str) -> list[m.ConnectionEvent]:
    rows = m.ConnectionEvent.objects.filter(connection=connection).order_by("created_at", "id")
    if kinds:
        rows = rows.filter(kind__in=kinds)
    return list(rows)


def statuses_entered(connection: m.Connection) -> list[str]:
    """Each status the connection moved into, in order (from its events)."""
    return [e.to_status for e in events(connection) if e.to_status and e.from_status and e.to_status != e.from_status]


def credential_values(connections: Iterable[m.Connection]) -> dict[str, str]:
    """``{"<connection id>:<kind>": value}`` of the stored credentials, decrypted."""
    return {
        f"{row.connection_id}:{row.kind}": row.value
        for row in m.Credential.objects.filter(connection__in=[c.pk for c in connections])
    }


def database_url() -> str:
    """The URL of the database this test process uses (the test database), for a subprocess."""
    conf = db_connection.settings_dict
    user = quote(conf.get("USER") or "")
    password = f":{quote(conf['PASSWORD'])}" if conf.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{conf.get('HOST') or '127.0.0.1'}:{conf.get('PORT') or 5432}/{conf['NAME']}"
