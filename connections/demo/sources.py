"""Where a demo connection's grant and troubles come from.

:class:`SandboxSubjects`: a real subject in the sandbox per connection. The
sandbox's ``sandbox_grant`` command plays the client granting access and
answers what the provider would hand the portal (sign-in fields, or the
callback's parameters); the provider's real client turns that into the
:class:`Grant`, exactly as the connect form or the callback view does. A
failing check is what the provider's real client reports: a one-off fault of
the sandbox for an outage, the subject broken the way a reason says for a
permanent problem, each translated by the check's own
:func:`~connections.lifecycle.check_failure`. Needs the sandbox served
in this process (:mod:`.in_process`) or by a server.

:class:`Placeholders`: without the sandbox nothing can be asked, so a grant
is a made-up source account with made-up balances and no credentials, and a
failure names no provider error.

Both serve every provider through the same calls: what differs between
providers is what their client and the sandbox say.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from decimal import Decimal
from io import StringIO
from typing import Any, Protocol

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from connections import lifecycle
from connections.lifecycle import CheckFailure, check_failure, household_grouping, rules
from connections.models import Connection, Household
from connections.providers.base import AccountData, ConnectionState, Grant, ProviderClient
from connections.providers.errors import ProviderError

from .in_process import provider_session

PLACEHOLDER_NAMESPACE = "6f1d7c3e-4b52-4a8e-9a0e-3d2b1c5e7f90"
# Plausible holdings for placeholder accounts: (account name, currency, low, high).
HOLDINGS: tuple[tuple[str, str, str, str], ...] = (
    ("BTC Wallet", "BTC", "0.05", "3.5"),
    ("ETH Wallet", "ETH", "0.8", "42"),
    ("SOL Wallet", "SOL", "12", "650"),
    ("USDC Balance", "USDC", "250", "48000"),
    ("ADA Wallet", "ADA", "400", "25000"),
    ("DOT Staking", "DOT", "30", "1800"),
)


class Source(Protocol):
    """What the demo asks of a source of grants and troubles, whichever it is."""

    subjects: int  # how many grants came from real subjects

    def grant(self, connection: Connection) -> Grant: ...

    def outage(self, connection: Connection, fault: Mapping[str, Any]) -> CheckFailure: ...

    def breakage(self, connection: Connection, reason: str) -> CheckFailure: ...


class SandboxSubjects:
    """Real sandbox subjects, met through the providers' real clients."""

    def __init__(self, *, password: str) -> None:
        self.password = password  # what a client signs in with, where the provider's sign-in has one
        self.subjects = 0

    # --- grants ---------------------------------------------------------------------

    def _person(self, connection: Connection) -> dict[str, str]:
        # The household as stored now: an earlier grant may have given it its grouping.
        household = Household.objects.get(pk=connection.household_id)
        client = connection.client
        return {
            "app_id": connection.provider_app.client_id,
            "name": client.name,
            "email": client.email,
            "identity": str(client.identity),
            "platform": connection.platform,
            "collection": household_grouping(household).get("collection", ""),
        }

    def _sandbox_grant(self, connection: Connection, **options: str) -> dict[str, Any]:
        out = StringIO()
        try:
            call_command("sandbox_grant", connection.provider, stdout=out, **self._person(connection), **options)
        except CommandError as error:
            # The sandbox's messages never carry a secret.
            raise CommandError(f"The sandbox refused demo connection {connection.pk}: {error}") from None
        reply: dict[str, Any] = json.loads(out.getvalue())
        return reply

    def grant(self, connection: Connection) -> Grant:
        """The client grants access at the sandbox; the provider's client completes the connect."""
        answer = self._sandbox_grant(connection, password=self.password)
        client = lifecycle.client_for_app(app=connection.provider_app)
        try:
            if client.flow == "form":
                grant = client.connect_with_credentials(fields=answer["fields"], platform=connection.platform)
            else:
                grant = client.complete_authorization(
                    params=answer["params"], platform=connection.platform, identity=str(connection.client.identity)
                )
        except ProviderError as error:
            raise CommandError(f"Demo connection {connection.pk} could not connect: {error.message}") from None
        self.subjects += 1
        return grant

    # --- troubles ---------------------------------------------------------------------

    def _control(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One call to the sandbox's control API."""
        token = getattr(settings, "SANDBOX_CONTROL_TOKEN", "")
        reply = provider_session().request(
            method,
            f"{settings.SANDBOX_BASE_URL}/_control/{path}",
            json=dict(body) if body is not None else None,
            headers={"X-Sandbox-Control-Token": token} if token else {},
            timeout=30,
        )
        if reply.status_code not in (200, 201):
            raise CommandError(f"The sandbox's control API refused {method} {path}: HTTP {reply.status_code}.")
        return reply.json()

    def outage(self, connection: Connection, fault: Mapping[str, Any]) -> CheckFailure:
        """What a check reports when the provider fails once with ``fault`` (a sandbox fault rule)."""
        client, state = _client_and_state(connection)
        rule = self._control("POST", "faults", {**fault, "provider": connection.provider, "count": 1})
        failure: CheckFailure | None = None
        try:
            client.probe(connection=state)
        except ProviderError as error:
            failure = check_failure(error, stage="probe")
        finally:
            self._control("DELETE", f"faults/{rule['id']}")
        if failure is None or not isinstance(failure.happened, rules.FailedTransiently):
            raise CommandError(
                f"Demo connection {connection.pk}: a sandbox {fault['kind']} fault did not fail a check."
            )
        return failure

    def breakage(self, connection: Connection, reason: str) -> CheckFailure:
        """Break the connection's subject the way ``reason`` says; what a check then reports."""
        self._sandbox_grant(connection, how=reason)
        client, state = _client_and_state(connection)
        failure = _check_finds(client, state)
        found = failure.happened.reason if failure and isinstance(failure.happened, rules.FailedPermanently) else ""
        if failure is None or found != reason:
            raise CommandError(
                f"Demo connection {connection.pk}: the sandbox broke it as {reason}, but a check finds "
                f"{found or 'no such problem'}."
            )
        return failure


def _client_and_state(connection: Connection) -> tuple[ProviderClient, ConnectionState]:
    row = Connection.objects.select_related("provider_app").get(pk=connection.pk)
    return lifecycle.client_for_app(app=row.provider_app), lifecycle.connection_state(connection=row)


def _check_finds(client: ProviderClient, state: ConnectionState) -> CheckFailure | None:
    """What a check of freshly granted credentials reports, in a check's order (lifecycle/check.py):
    probe; an access token refused is renewed and probed once more. None: nothing is wrong."""
    try:
        client.probe(connection=state)
        return None
    except ProviderError as error:
        if not error.access_rejected:
            return check_failure(error, stage="probe")
        refused = error
    try:
        renewed = list(client.renew(connection=state))
    except ProviderError as error:
        return check_failure(error, stage="renew")
    # Nothing renewable: the refusal stands. Renewed: the break did not hold
    # (the caller says so, and the seed's transaction takes the tokens back).
    return check_failure(refused, stage="probe") if not renewed else None


class Placeholders:
    """Made-up grants and wordless failures, for a demo without the sandbox."""

    subjects = 0

    def grant(self, connection: Connection) -> Grant:
        rng = random.Random(f"holdings/{connection.client.identity}/{connection.provider}/{connection.platform}")
        accounts = []
        for position, (name, currency, low, high) in enumerate(rng.sample(HOLDINGS, k=rng.randint(1, 3))):
            low_d, high_d = Decimal(low), Decimal(high)
            balance = (low_d + (high_d - low_d) * Decimal(str(rng.random()))).quantize(Decimal("0.00000001"))
            accounts.append(
                AccountData(external_id=f"demo-acc-{position}", name=name, currency=currency, balance=balance)
            )
        return Grant(credentials=(), external_account_id=placeholder_account_id(connection), accounts=accounts)

    def outage(self, connection: Connection, fault: Mapping[str, Any]) -> CheckFailure:
        return CheckFailure(rules.FailedTransiently(), "", {})

    def breakage(self, connection: Connection, reason: str) -> CheckFailure:
        return CheckFailure(rules.FailedPermanently(reason=reason), "", {})


def placeholder_account_id(connection: Connection) -> str:
    """The made-up source account id a placeholder grant gives ``connection`` (stable across fresh databases)."""
    seed = f"{PLACEHOLDER_NAMESPACE}/{connection.client.identity}/{connection.provider}/{connection.platform}"
    return "demo-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
