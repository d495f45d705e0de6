"""The database goes away for a moment during a check: the check is retried and nothing is lost.

The blip is injected with Django's ``execute_wrapper`` on the checking
thread's connection: the first INSERT, UPDATE or DELETE after the provider
answered raises ``OperationalError`` (as a dropped connection or a failover
would), and every statement after it works again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from connections import lifecycle
from connections import models as m
from connections.providers.coinify import CoinifyClient

from .support import Portal, SandboxControl, connect_coinify, events, make_due

WRITES = ("INSERT", "UPDATE", "DELETE")


@dataclass
class Blip:
    """Armed once the provider answered; fires on the next write, once."""

    armed: bool = False
    fired: int = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if self.armed and not self.fired and sql.lstrip().upper().startswith(WRITES):
            self.fired += 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


@pytest.fixture
def blip_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Blip]]:
    """``blip_after("renew")`` (or ``"probe"``): a Blip armed when that provider call returns."""
    blips: list[Blip] = []

    def arm(operation: str) -> Blip:
        blip = Blip()
        original = getattr(CoinifyClient, operation)

        def answered(self: CoinifyClient, **kwargs: Any) -> Any:
            result = original(self, **kwargs)
            blip.armed = True
            return result

        monkeypatch.setattr(CoinifyClient, operation, answered)
        blips.append(blip)
        return blip

    with connection.execute_wrapper(lambda *args: blips[-1](*args) if blips else args[0](*args[1:])):
        yield arm


def _retry_when_due(connection_row: m.Connection) -> lifecycle.CheckResult:
    """The retry, at the time the failed check rescheduled it (a worker picking it up then)."""
    connection_row.refresh_from_db()
    assert connection_row.next_check_at is not None, "the failed check left the connection unscheduled"
    at = max(connection_row.next_check_at, timezone.now()) + timedelta(seconds=1)
    return lifecycle.connection_check(connection_id=connection_row.pk, now=at)


def test_a_blip_after_a_probe_is_retried_and_loses_nothing(
    sandbox: SandboxControl, portal: Portal, blip_after: Callable[[str], Blip]
) -> None:
    connection_row = connect_coinify(sandbox, portal)
    blip = blip_after("probe")
    make_due(connection_row)

    failed = lifecycle.connection_check(connection_id=connection_row.pk)

    assert blip.fired == 1
    assert failed.outcome == lifecycle.Outcome.ERROR
    connection_row.refresh_from_db()
    assert connection_row.status == m.Status.ACTIVE
    assert connection_row.lease_owner == ""  # the claim was released, not left to time out
    retried = _retry_when_due(connection_row)
    connection_row.refresh_from_db()
    assert retried.outcome == lifecycle.Outcome.OK
    assert connection_row.status == m.Status.ACTIVE
    assert connection_row.accounts.exists()


def test_a_blip_while_storing_renewed_credentials_is_waited_out(
    sandbox: SandboxControl, portal: Portal, blip_after: Callable[[str], Blip]
) -> None:
    """The provider has rotated the refresh token; the only copy of the new one is in the worker's memory.

    A database that drops one statement must not cost the client their
    connection: the write is retried, the check completes, and the next
    renewal spends the new token, never the dead one.
    """
    sandbox.lifetimes("coinify", access=150)  # every check renews
    connection_row = connect_coinify(sandbox, portal)
    blip = blip_after("renew")
    make_due(connection_row)

    result = lifecycle.connection_check(connection_id=connection_row.pk)
    again = _retry_when_due(connection_row)

    connection_row.refresh_from_db()
    assert blip.fired == 1
    assert result.outcome == lifecycle.Outcome.OK, connection_row.last_error
    assert again.outcome == lifecycle.Outcome.OK
    assert again.renewed
    assert connection_row.status == m.Status.ACTIVE
    assert len(events(connection_row, m.ConnectionEvent.Kind.RENEWED)) == 2
    # Each refresh token was spent once: the chain is intact.
    grants = sandbox.requests("coinify", path="/auth", grant_type="refresh_token")
    assert [g["status"] for g in grants] == [200, 200]


def test_a_blip_after_an_offline_token_renewal_loses_nothing(
    sandbox: SandboxControl, portal: Portal, blip_after: Callable[[str], Blip]
) -> None:
    sandbox.lifetimes("coinify", access=150)
    connection_row = connect_coinify(sandbox, portal, offline=True)
    blip = blip_after("renew")
    make_due(connection_row)

    result = lifecycle.connection_check(connection_id=connection_row.pk)

    connection_row.refresh_from_db()
    assert blip.fired == 1
    assert result.outcome == lifecycle.Outcome.OK
    assert connection_row.status == m.Status.ACTIVE
    assert len(events(connection_row, m.ConnectionEvent.Kind.RENEWED)) == 1
