"""Bulk data for the benchmarks, generated inside PostgreSQL.

A million connections through the ORM would take many minutes; one
``INSERT ... SELECT generate_series`` per table takes seconds, and the rows are
shaped exactly like the ones the portal writes (same tables, same columns).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from connections.models import Environment, Firm, Membership, Provider, ProviderApp


@dataclass(frozen=True)
class BenchWorld:
    firm_id: int
    big_adviser: str  # username with `big_households` households
    small_adviser: str  # username with `small_households` households
    password: str
    total_connections: int
    app_ids: dict[str, int]


CONNECTIONS_PER_HOUSEHOLD = 5
BENCH_PASSWORD = "bench-only-password-1"  # noqa: S105 - a throwaway local benchmark login


def _exec(sql: str, params: list | tuple | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.rowcount


def _insert_households(*, firm_id: int, count: int, adviser_id: int | None, prefix: str) -> tuple[int, int]:
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
    if adviser_id is not None:
        _exec(
            """
            INSERT INTO connections_household_advisers (household_id, user_id)
            SELECT h.id, %s FROM connections_household h WHERE h.id BETWEEN %s AND %s
            """,
            [adviser_id, first, last],
        )
    return first, last


def _insert_connections(*, first_household: int, last_household: int, app_ids: dict[str, int], due_fraction: float,
                        with_accounts: bool) -> int:
    """Five connections per household, spread over providers and statuses.

    ``due_fraction`` of them get ``next_check_at`` in the past (due now); the
    rest are scheduled within the next hour, as a healthy fleet would be.
    """
    apps = list(app_ids.items())
    case_provider = "CASE (g %% 4) " + " ".join(f"WHEN {i} THEN '{p}'" for i, (p, _) in enumerate(apps)) + " END"
    case_app = "CASE (g %% 4) " + " ".join(f"WHEN {i} THEN {a}" for i, (_, a) in enumerate(apps)) + " END"
    count = _exec(
        f"""
        INSERT INTO connections_connection (
            household_id, client_id, provider_app_id, provider, platform, label, status, reason,
            external_account_id, last_success_at, last_checked_at, last_error, next_check_at,
            reconnect_by, consecutive_failures, degraded_since, lease_until, lease_owner,
            connected_at, disconnected_at, created_by_id, created_at, updated_at)
        SELECT c.household_id, c.id, {case_app}, {case_provider},
               (ARRAY['coinbase','gemini','kraken','binance','bitstamp'])[1 + (g %% 5)], '',
               CASE WHEN (c.id * 5 + g) %% 50 = 0 THEN 'needs_reconnect'
                    WHEN (c.id * 5 + g) %% 37 = 0 THEN 'degraded' ELSE 'active' END,
               CASE WHEN (c.id * 5 + g) %% 50 = 0 THEN 'revoked' ELSE '' END,
               'acct-' || c.id || '-' || g,
               now() - interval '10 minutes', now() - interval '10 minutes', '',
               CASE WHEN (c.id * 5 + g) %% 50 = 0 THEN NULL
                    WHEN random() < %s THEN now() - interval '1 minute'
                    ELSE now() + (random() * interval '1 hour') + interval '1 minute' END,
               NULL, 0, NULL, NULL, '', now() - interval '30 days', NULL, NULL, now(), now()
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


def world_build(*, total_connections: int = 1_000_000, firm_connections: int = 100_000, big_households: int = 2_000,
                small_households: int = 200, due_fraction: float = 0.01, log=print) -> BenchWorld:
    """Build the benchmark world from an empty database; idempotent by wiping first."""
    assert connection.vendor == "postgresql", "the benchmarks run on PostgreSQL"
    started = time.perf_counter()
    with transaction.atomic():
        _exec(
            "TRUNCATE connections_account, connections_connectionevent, connections_credential, "
            "connections_connection, connections_client, connections_household_advisers, "
            "connections_household, connections_membership, connections_firm RESTART IDENTITY CASCADE"
        )
        User = get_user_model()
        User.objects.filter(username__startswith="bench-").delete()
        app_ids = {}
        for provider in Provider:
            app, _ = ProviderApp.objects.get_or_create(
                provider=provider, environment=Environment.SANDBOX, name="bench",
                defaults={"base_url": f"http://127.0.0.1:8200/sandbox/{provider}", "client_id": f"bench-{provider}"},
            )
            app_ids[provider.value] = app.pk
        firm = Firm.objects.create(name="Bench Advisory", slug="bench-advisory")
        big = User.objects.create_user("bench-big", password=BENCH_PASSWORD)
        small = User.objects.create_user("bench-small", password=BENCH_PASSWORD)
        for user in (big, small):
            Membership.objects.create(user=user, firm=firm, role=Membership.Role.ADVISER)

        made = 0
        for count, adviser in ((big_households, big), (small_households, small)):
            first, last = _insert_households(
                firm_id=firm.pk, count=count, adviser_id=adviser.pk, prefix=adviser.username
            )
            made += _insert_connections(first_household=first, last_household=last, app_ids=app_ids,
                                        due_fraction=due_fraction, with_accounts=True)
        # The rest of the firm, then other firms, in chunks of 100,000 connections.
        rest_of_firm = (firm_connections - made) // CONNECTIONS_PER_HOUSEHOLD
        if rest_of_firm > 0:
            first, last = _insert_households(firm_id=firm.pk, count=rest_of_firm, adviser_id=None, prefix="firm")
            made += _insert_connections(first_household=first, last_household=last, app_ids=app_ids,
                                        due_fraction=due_fraction, with_accounts=False)
        other = 0
        while made < total_connections:
            other += 1
            other_firm = Firm.objects.create(name=f"Other firm {other}", slug=f"bench-other-{other}")
            households = min(100_000, total_connections - made) // CONNECTIONS_PER_HOUSEHOLD
            first, last = _insert_households(firm_id=other_firm.pk, count=households, adviser_id=None, prefix="other")
            made += _insert_connections(first_household=first, last_household=last, app_ids=app_ids,
                                        due_fraction=due_fraction, with_accounts=False)
            log(f"  {made:,} connections ({time.perf_counter() - started:.0f} s)")
    _exec("ANALYZE")
    log(f"world built: {made:,} connections in {time.perf_counter() - started:.1f} s")
    return BenchWorld(
        firm_id=firm.pk,
        big_adviser=big.username,
        small_adviser=small.username,
        password=BENCH_PASSWORD,
        total_connections=made,
        app_ids=app_ids,
    )


def due_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM connections_connection WHERE next_check_at <= %s", [timezone.now()])
        return cursor.fetchone()[0]
