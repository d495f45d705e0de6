"""A link revoked at the provider becomes a reconnect prompt after one sweep, and is then left alone.

Each case makes a healthy connection the portal's way, breaks it in the
sandbox (the way the provider's own user or support would), lets the clock
reach the connection's next check and fires the sweep once. Then the beat
keeps running for a day: nothing more may be sent to the provider for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from connections import models as m

from .support import (
    Beat,
    Clock,
    Portal,
    SandboxControl,
    connect_bloquo,
    connect_coinify,
    connect_dapi,
    connect_turnqey,
    events,
    fresh,
)

# An hour-long Coinify access token: the next check is a routine probe (every
# quarter of an hour), not a renewal, so the calls it makes are known exactly.
COINIFY_ACCESS_SECONDS = 3600


@dataclass(frozen=True)
class Broken:
    """A connection broken at the provider, and what the portal must say and send about it."""

    connection: m.Connection
    message: str
    # (method, path beneath the mount, status) of each call the one check makes, in order.
    calls: list[tuple[str, str, int]]


def _turnqey_revoked(sandbox: SandboxControl, portal: Portal) -> Broken:
    connection = connect_turnqey(portal, platform="coinbase")
    assert sandbox.act("turnqey", "revoke", identity=str(portal.client.identity), platform="coinbase") >= 1
    collection = connection.grouping["collection"]
    return Broken(
        connection,
        "Coinbase via Turnqey: access was revoked at Coinbase. Ask the client to reconnect.",
        # Turnqey answers (200) and lists the source's accounts as revoked.
        [("GET", f"/v1/api/collections/{collection}/accounts", 200)],
    )


def _coinify_revoked(sandbox: SandboxControl, portal: Portal) -> Broken:
    sandbox.lifetimes("coinify", access=COINIFY_ACCESS_SECONDS)
    connection = connect_coinify(sandbox, portal)
    assert sandbox.act("coinify", "revoke", user_id=int(connection.external_account_id)) >= 1
    return Broken(
        connection,
        "Coinify: access was revoked at Coinify. Ask the client to reconnect.",
        # The access token is refused; one refresh (refused too) settles it.
        [("GET", "/me", 401), ("POST", "/auth", 400)],
    )


def _coinify_deactivated(sandbox: SandboxControl, portal: Portal) -> Broken:
    sandbox.lifetimes("coinify", access=COINIFY_ACCESS_SECONDS)
    connection = connect_coinify(sandbox, portal)
    assert sandbox.act("coinify", "deactivate", user_id=int(connection.external_account_id)) >= 1
    return Broken(
        connection,
        "Coinify: access was revoked at Coinify. Ask the client to reconnect.",
        [("GET", "/me", 403)],
    )


def _bloquo_revoked(sandbox: SandboxControl, portal: Portal) -> Broken:
    connection, customer_id = connect_bloquo(sandbox, portal)
    assert sandbox.act("bloquo", "revoke", customer_id=customer_id) >= 1
    return Broken(
        connection,
        "Bloquo: access was revoked at Bloquo. Ask the client to reconnect.",
        [("GET", "/api/v1/accounting/accounts", 401), ("POST", "/api/v1/auth/token", 403)],
    )


def _dapi_delinked(sandbox: SandboxControl, portal: Portal) -> Broken:
    connection = connect_dapi(portal, platform="binance")
    assert sandbox.act("dapi", "delink", connection_id=connection.grouping["connectionID"]) >= 1
    return Broken(
        connection,
        "Binance via Dapi: access was revoked at Binance. Ask the client to reconnect.",
        [("POST", "/v2/data/accounts/get", 401)],
    )


# Calls about the portal's app rather than any one connection.
APP_ONLY_PATHS = {"/v1/api/token"}

CASES: dict[str, Callable[[SandboxControl, Portal], Broken]] = {
    "turnqey-revoke": _turnqey_revoked,
    "coinify-revoke": _coinify_revoked,
    "coinify-deactivate": _coinify_deactivated,
    "bloquo-revoke": _bloquo_revoked,
    "dapi-delink": _dapi_delinked,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_link_revoked_at_the_provider_asks_for_reconnect_after_one_sweep_and_is_not_retried(
    case: str, sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat
) -> None:
    broken = CASES[case](sandbox, portal)
    connection, provider = broken.connection, broken.connection.provider
    healthy = fresh(connection)
    assert healthy.status == m.Status.ACTIVE
    assert healthy.next_check_at is not None
    bookmark = sandbox.last_request_id()

    # Nothing happens until the connection's own next check: then one sweep decides.
    clock.move_to(healthy.next_check_at)
    beat.tick()

    flagged = fresh(connection)
    assert flagged.status == m.Status.NEEDS_RECONNECT, flagged.last_error
    assert flagged.reason == m.Reason.REVOKED
    assert flagged.status_message == broken.message
    assert flagged.next_check_at is None
    assert flagged.lease_owner == ""
    transition = [e for e in events(connection) if e.to_status == m.Status.NEEDS_RECONNECT]
    assert len(transition) == 1
    assert (transition[0].from_status, transition[0].reason) == (m.Status.ACTIVE, m.Reason.REVOKED)
    assert transition[0].actor_label == "job:check"
    assert transition[0].message == broken.message
    calls = sandbox.requests(provider, after=bookmark)
    assert [(c["method"], c["path"], c["status"]) for c in calls] == broken.calls
    history = len(events(connection))

    # A day of sweeps later: nothing was sent again, and the prompt stands.
    for _ in range(24):
        clock.advance(timedelta(hours=1))
        beat.tick()
    # (Turnqey's app token is the portal's own, kept fresh for other connections.)
    later_calls = [c for c in sandbox.requests(provider, after=bookmark) if c["path"] not in APP_ONLY_PATHS]
    assert later_calls == calls
    later = fresh(connection)
    assert (later.status, later.reason, later.next_check_at) == (m.Status.NEEDS_RECONNECT, m.Reason.REVOKED, None)
    assert later.last_checked_at == flagged.last_checked_at
    assert len(events(connection)) == history
