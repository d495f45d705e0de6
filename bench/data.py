"""Bulk data for the benchmarks, generated inside PostgreSQL.

A million connections through the ORM would take many minutes; one
``INSERT ... SELECT generate_series`` per table takes seconds, and the rows are
shaped exactly like the ones the portal writes (same tables, same columns).

The world: one firm of ``firm_connections`` connections in which one adviser
("bench-big") has ``big_households`` households and another ("bench-small")
``small_households``, each adviser's spread evenly through the firm's (never a
run of consecutive ids, as in a real firm), five connections per household over
the four providers; then other firms in chunks of 100,000 connections up to
``total_connections`` (:func:`world_grow`). ``due_fraction`` of the scheduled
connections are due now; the rest are scheduled hours ahead, so that nothing
else becomes due while a benchmark runs (the sweep's cost depends on the due
rows only, whatever the spread of the others).

Load sets (:func:`load_connections_insert`) are extra households whose
connections belong to one provider app and get real credentials from the
sandbox: the check-throughput and expiry-storm benchmarks use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from connections.models import Environment, Firm, Membership, Provider, ProviderApp

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchWorld:
    firm_id: int
    big_adviser: str  # username with `big_households` households
    small_adviser: str  # username with `small_households` households
    total_connections: int
    app_ids: dict[str, int]
    due_fraction: float


CONNECTIONS_PER_HOUSEHOLD = 5
CHUNK_CONNECTIONS = 100_000
# Scheduled, not-due connections wait between these many hours from now.
NOT_DUE_AFTER_HOURS = 6


def _exec(sql: str, params: list | tuple | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.rowcount


def _scalar(sql: str, params: list | tuple | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        row = cursor.fetchone()
    return row[0] if row else None


def _insert_households(*, firm_id: int, count: int, prefix: str) -> tuple[int, int]:
    """Insert ``count`` households (each with one client); returns (first_id, last_id)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO connections_household (firm_id, name, reference, created_at, updated_at)
            SELECT %s, %s || ' household ' || g, 'REF-' || g, now(), now()
            FROM generate_series(1, %s) AS g
            RETURNING id
            """,
            [firm_id, prefix, count],
        )
        ids = [row[0] for row in cursor.fetchall()]
    first, last = min(ids), max(ids)
    _exec(
        """
        INSERT INTO connections_client (household_id, name, email, identity, created_at, updated_at)
        SELECT h.id, 'Client of ' || h.name, 'client' || h.id || '@example.test', gen_random_uuid(), now(), now()
        FROM connections_household h WHERE h.id BETWEEN %s AND %s
        """,
        [first, last],
    )
    return first, last


def _insert_connections(*, first_household: int, last_household: int, app_ids: dict[str, int], due_fraction: float,
                        with_accounts: bool) -> int:
    """Five connections per household, spread over providers and statuses.

    ``due_fraction`` of them get ``next_check_at`` in the past (due now); the
    rest are scheduled hours ahead (see the module docstring); about one in
    fifty needs a reconnect (unscheduled), one in 37 is degraded.
    """
    apps = list(app_ids.items())
    # Which connection is broken or degraded: a hash of its place, so that any selection of households
    # (every tenth, say) has its share of them, which a plain modulus of the ids would not.
    spread = "abs(hashint4((c.id * 5 + g)::int)::bigint)"
    case_provider = "CASE (g %% 4) " + " ".join(f"WHEN {i} THEN '{p}'" for i, (p, _) in enumerate(apps)) + " END"
    case_app = "CASE (g %% 4) " + " ".join(f"WHEN {i} THEN {a}" for i, (_, a) in enumerate(apps)) + " END"
    count = _exec(
        f"""
        INSERT INTO connections_connection (
            household_id, client_id, provider_app_id, provider, platform, label, status, reason,
            external_account_id, grouping, last_success_at, last_checked_at, last_error, next_check_at,
            reconnect_by, reconnect_by_rolls, consecutive_failures, degraded_since, lease_until, lease_owner,
            connected_at, disconnected_at, created_by_id, created_at, updated_at)
        SELECT c.household_id, c.id, {case_app}, {case_provider},
               (ARRAY['coinbase','gemini','kraken','binance','bitstamp'])[1 + (g %% 5)], '',
               CASE WHEN {spread} %% 50 = 0 THEN 'needs_reconnect'
                    WHEN {spread} %% 37 = 0 THEN 'degraded' ELSE 'active' END,
               CASE WHEN {spread} %% 50 = 0 THEN 'revoked'
                    WHEN {spread} %% 37 = 0 THEN 'transient' ELSE '' END,
               'acct-' || c.id || '-' || g, '{{}}'::jsonb,
               now() - interval '10 minutes', now() - interval '10 minutes', '',
               CASE WHEN {spread} %% 50 = 0 THEN NULL
                    WHEN random() < %s THEN now() - interval '1 minute'
                    ELSE now() + interval '{NOT_DUE_AFTER_HOURS} hours' + random() * interval '1 hour' END,
               NULL, false, 0, NULL, NULL, '', now() - interval '30 days', NULL, NULL, now(), now()
        FROM connections_client c
        CROSS JOIN generate_series(1, {CONNECTIONS_PER_HOUSEHOLD}) AS g
        WHERE c.household_id BETWEEN %s AND %s
        """,  # the interpolated parts are integers and provider keys from this module
        [due_fraction, first_household, last_household],
    )
    if with_accounts:
        _exec(
            """
            INSERT INTO connections_account (connection_id, external_id, name, currency, balance, status, as_of)
            SELECT cn.id, 'acc-' || cn.id || '-' || a, cur || ' account', cur,
                   round((random() * 10)::numeric, 8), 'active', now() - interval '10 minutes'
            FROM connections_connection cn
            CROSS JOIN (VALUES (1, 'BTC'), (2, 'ETH')) AS t(a, cur)
            WHERE cn.household_id BETWEEN %s AND %s
            """,
            [first_household, last_household],
        )
    return count


def _advisers_households(households: list[int], *, big: int, small: int) -> tuple[list[int], list[int]]:
    """The big and the small adviser's households, spread evenly through the firm's and never shared.

    As in a real firm, where advisers' clients arrived over years: an adviser's households are not a
    run of consecutive ids, so no page may owe its speed to reading one range of an index.
    """
    stride = len(households) // big
    assert stride >= 2, "the firm needs at least twice as many households as the big adviser has"
    big_ids = households[::stride][:big]
    # Halfway between two of the big adviser's, every so many of those gaps.
    gaps = households[stride // 2 :: stride]
    small_ids = gaps[:: max(1, len(gaps) // small)][:small]
    assert len(big_ids) == big, f"the firm has too few households for {big} of the big adviser's"
    assert len(small_ids) == small, f"the firm has too few households for {small} of the small adviser's"
    assert not set(big_ids) & set(small_ids)
    return big_ids, small_ids


def _bench_app(provider: str, *, name: str, base_url: str, **fields) -> ProviderApp:
    app, _ = ProviderApp.objects.update_or_create(
        provider=provider, environment=Environment.SANDBOX, name=name,
        defaults={"base_url": base_url, **fields},
    )
    return app


def world_build(*, firm_connections: int = 100_000, big_households: int = 2_000, small_households: int = 200,
                due_fraction: float = 0.01, sandbox_url: str = "http://127.0.0.1:8200/sandbox",
                log: Log = print) -> BenchWorld:
    """Build the firm from an empty database (idempotent: it wipes the portal's rows first)."""
    assert connection.vendor == "postgresql", "the benchmarks run on PostgreSQL"
    started = time.perf_counter()
    with transaction.atomic():
        _exec(
            "TRUNCATE connections_account, connections_connectionevent, connections_credential, "
            "connections_authorizationrequest, connections_clientlink, "
            "connections_connection, connections_client, connections_household_advisers, "
            "connections_household, connections_membership, connections_firm, connections_providerapp, "
            "connections_periodicjobrun, django_session RESTART IDENTITY CASCADE"
        )
        User = get_user_model()
        User.objects.filter(username__startswith="bench-").delete()
        app_ids = {}
        for provider in Provider:
            app = _bench_app(provider, name="bench", base_url=f"{sandbox_url}/{provider}",
                             client_id=f"bench-{provider}")
            app_ids[provider.value] = app.pk
        firm = Firm.objects.create(name="Bench Advisory", slug="bench-advisory")
        big = User.objects.create_user("bench-big", password=None)
        small = User.objects.create_user("bench-small", password=None)
        for user in (big, small):
            Membership.objects.create(user=user, firm=firm, role=Membership.Role.ADVISER)

        first, last = _insert_households(
            firm_id=firm.pk, count=firm_connections // CONNECTIONS_PER_HOUSEHOLD, prefix="firm"
        )
        made = _insert_connections(first_household=first, last_household=last, app_ids=app_ids,
                                   due_fraction=due_fraction, with_accounts=True)
        big_ids, small_ids = _advisers_households(list(range(first, last + 1)), big=big_households,
                                                  small=small_households)
        for adviser, ids in ((big, big_ids), (small, small_ids)):
            _exec("INSERT INTO connections_household_advisers (household_id, user_id) "
                  "SELECT unnest(%s::bigint[]), %s", [ids, adviser.pk])
    tables_settle()
    log(f"  firm built: {made:,} connections in {time.perf_counter() - started:.1f} s")
    return BenchWorld(
        firm_id=firm.pk,
        big_adviser=big.username,
        small_adviser=small.username,
        total_connections=made,
        app_ids=app_ids,
        due_fraction=due_fraction,
    )


def world_grow(world: BenchWorld, *, total_connections: int, log: Log = print) -> BenchWorld:
    """Add other firms, 100,000 connections each, until the world holds ``total_connections``."""
    started = time.perf_counter()
    made = connections_count()
    other = Firm.objects.filter(slug__startswith="bench-other-").count()
    while made < total_connections:
        other += 1
        with transaction.atomic():
            other_firm = Firm.objects.create(name=f"Other firm {other}", slug=f"bench-other-{other}")
            households = min(CHUNK_CONNECTIONS, total_connections - made) // CONNECTIONS_PER_HOUSEHOLD
            first, last = _insert_households(firm_id=other_firm.pk, count=households, prefix="other")
            made += _insert_connections(first_household=first, last_household=last, app_ids=world.app_ids,
                                        due_fraction=world.due_fraction, with_accounts=False)
        log(f"  {made:,} connections ({time.perf_counter() - started:.0f} s)")
    tables_settle()
    return BenchWorld(**{**world.__dict__, "total_connections": made})


def tables_settle() -> None:
    """What autovacuum would have done by the time real tables got this big, on every table: the
    planner's statistics, and the visibility map without which no index can answer alone (an
    index-only scan visits each row it finds while the map says nothing of the row's page)."""
    _exec("VACUUM ANALYZE")


def connections_count() -> int:
    return int(_scalar("SELECT count(*) FROM connections_connection"))


def due_count() -> int:
    return int(_scalar(
        "SELECT count(*) FROM connections_connection WHERE next_check_at IS NOT NULL AND next_check_at <= %s",
        [timezone.now()],
    ))


def sweep_claims_release() -> int:
    """Put what sweeps claimed back to due and unclaimed, so the next sweep sees the same due set."""
    released = _exec(
        "UPDATE connections_connection SET next_check_at = now() - interval '1 minute', "
        "lease_until = NULL, lease_owner = '' WHERE lease_owner LIKE 'sweep:%%'"
    )
    _exec("DELETE FROM connections_periodicjobrun WHERE job = 'sweep'")
    _exec("VACUUM ANALYZE connections_connection")
    return released


def unschedule_all(*, except_app_ids: list[int] | tuple[int, ...] = ()) -> int:
    """Move every due or claimed connection of other apps hours ahead (the load phases check only their own)."""
    return _exec(
        f"UPDATE connections_connection SET lease_until = NULL, lease_owner = '', "
        f"next_check_at = now() + interval '{NOT_DUE_AFTER_HOURS} hours' + random() * interval '1 hour' "
        "WHERE next_check_at IS NOT NULL AND (next_check_at <= now() + interval '1 hour' OR lease_owner <> '') "
        "AND NOT (provider_app_id = ANY(%s))",
        [list(except_app_ids)],
    )


def load_connections_insert(*, app: ProviderApp, count: int, platform: str, label: str) -> list[int]:
    """``count`` unscheduled, active connections of ``app`` in a firm of their own; returns their ids.

    One household and one client per connection, as a firm whose clients each
    linked one source. The caller stores credentials and then schedules them.
    """
    firm, _ = Firm.objects.get_or_create(slug=f"bench-load-{label}", defaults={"name": f"Bench load ({label})"})
    first, last = _insert_households(firm_id=firm.pk, count=count, prefix=f"load-{label}")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO connections_connection (
                household_id, client_id, provider_app_id, provider, platform, label, status, reason,
                external_account_id, grouping, last_success_at, last_checked_at, last_error, next_check_at,
                reconnect_by, reconnect_by_rolls, consecutive_failures, degraded_since, lease_until, lease_owner,
                connected_at, disconnected_at, created_by_id, created_at, updated_at)
            SELECT c.household_id, c.id, %s, %s, %s, '', 'active', '', '', '{}'::jsonb,
                   now() - interval '10 minutes', now() - interval '10 minutes', '', NULL,
                   NULL, false, 0, NULL, NULL, '', now() - interval '1 day', NULL, NULL, now(), now()
            FROM connections_client c WHERE c.household_id BETWEEN %s AND %s
            ORDER BY c.id
            RETURNING id
            """,
            [app.pk, app.provider, platform, first, last],
        )
        return sorted(row[0] for row in cursor.fetchall())
