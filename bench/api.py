"""API: ``GET /api/v1/connections`` paged through a firm of 10,000 connections, 100 per page.

In-process through Django's test client with a firm API key in the
``Authorization`` header (as :mod:`bench.pages` measures pages: the server's
own time, without a network or a WSGI server in front). The firm is built
inside PostgreSQL beside the benchmark's world: 2,000 households of five
connections, each with a credential (its kind and expiry feed the deadlines)
and an event (its time feeds ``changed_at``). Every page of a full pass is
timed and its queries counted, for ``rounds`` passes after one warm-up pass;
the figure is the median page, and the query count must be the same on
every page, the first and the hundredth alike.

Right after each page, its **floor** is timed: the same rows (the same firm,
the same keyset position, the same columns, the newest event's time and the
credentials' expiries) read by two plain SQL statements and serialised by
``json.dumps``, without routing, authentication, the ORM or the schemas. The
target is the page within 2x its floor.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from api.keys import api_key_create
from connections import crypto
from connections.models import Firm

from .data import BenchWorld, _exec, _insert_connections, _insert_households, tables_settle
from .pages import _percentile
from .results import Results

PER_PAGE = 100
MEDIAN_TARGET_MS = 60.0
FLOOR_RATIO_TARGET = 2.0


def api_firm_build(world: BenchWorld, *, connections: int, log: Any = print) -> tuple[Firm, str]:
    """A firm of ``connections`` connections (five per household), a credential and an event each, and a key."""
    firm, _ = Firm.objects.get_or_create(slug="bench-api", defaults={"name": "Bench API firm"})
    first, last = _insert_households(firm_id=firm.pk, count=connections // 5, prefix="api")
    made = _insert_connections(
        first_household=first, last_household=last, app_ids=world.app_ids, due_fraction=0.0, with_accounts=False
    )
    # Values are never read by a list (deferred); one ciphertext for all keeps the insert quick.
    value = crypto.encrypt("bench-api-refresh-token")
    _exec(
        """
        INSERT INTO connections_credential (connection_id, kind, value, issued_at, expires_at, created_at)
        SELECT cn.id, 'refresh', %s, now() - interval '1 hour', now() + interval '23 hours', now()
        FROM connections_connection cn WHERE cn.household_id BETWEEN %s AND %s
        """,
        [value, first, last],
    )
    _exec(
        """
        INSERT INTO connections_connectionevent (connection_id, kind, from_status, to_status, reason, message,
                                                 actor_label, details, created_at)
        SELECT cn.id, 'connected', 'pending', 'active', '', 'Connected.', 'bench', '{}'::jsonb,
               now() - interval '2 days'
        FROM connections_connection cn WHERE cn.household_id BETWEEN %s AND %s
        """,
        [first, last],
    )
    tables_settle()
    log(f"  API firm: {made:,} connections")
    return firm, api_key_create(firm=firm, name="bench").key


def _timed_page(client: Client, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One page: its server time, CPU, SQL time and query count, and its body."""
    with CaptureQueriesContext(connection) as captured:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}: {response.content[:300]!r}")
    sample = {
        "ms": elapsed * 1000,
        "cpu_ms": elapsed_cpu * 1000,
        "sql_ms": sum(float(q["time"]) for q in captured.captured_queries) * 1000,
        "queries": len(captured.captured_queries),
        "sql": [q["sql"][:300] for q in captured.captured_queries],
    }
    return sample, response.json()


# The floor: the same page's rows (the same columns a representation shows, the newest event's
# time, the credentials' kinds and expiries) by two plain statements, serialised by json.dumps.
FLOOR_ROWS_SQL = """
SELECT c.id, c.household_id, h.name, h.reference, c.client_id, cl.name, c.provider, c.platform, c.label,
       c.status, c.reason, c.last_success_at, c.last_checked_at, c.next_check_at, c.reconnect_by,
       c.connected_at, c.disconnected_at, c.created_at, c.updated_at, pa.environment,
       (SELECT e.created_at FROM connections_connectionevent e WHERE e.connection_id = c.id
        ORDER BY e.created_at DESC LIMIT 1)
FROM connections_connection c
JOIN connections_household h ON h.id = c.household_id
JOIN connections_client cl ON cl.id = c.client_id
JOIN connections_providerapp pa ON pa.id = c.provider_app_id
WHERE h.firm_id = %s AND (c.household_id, c.id) > (%s, %s)
ORDER BY c.household_id, c.id
LIMIT %s
"""
FLOOR_CREDENTIALS_SQL = (
    "SELECT connection_id, kind, issued_at, expires_at FROM connections_credential WHERE connection_id = ANY(%s)"
)


def floor_page(*, firm_id: int, after: tuple[int, int], limit: int) -> dict[str, Any]:
    """The same page from a bare query: its time, CPU and body size (see ``FLOOR_ROWS_SQL``)."""
    with CaptureQueriesContext(connection) as captured:
        started, started_cpu = time.perf_counter(), time.process_time()
        with connection.cursor() as cursor:
            cursor.execute(FLOOR_ROWS_SQL, [firm_id, after[0], after[1], limit + 1])
            rows = cursor.fetchall()
            cursor.execute(FLOOR_CREDENTIALS_SQL, [[row[0] for row in rows[:limit]]])
            credentials: dict[int, list[dict[str, Any]]] = {}
            for connection_id, kind, issued_at, expires_at in cursor.fetchall():
                credentials.setdefault(connection_id, []).append(
                    {"kind": kind, "issued_at": issued_at, "expires_at": expires_at})
        items = [
            {
                "id": r[0], "household": {"id": r[1], "name": r[2], "reference": r[3]},
                "client": {"id": r[4], "name": r[5]}, "provider": r[6], "platform": r[7], "label": r[8],
                "status": r[9], "reason": r[10], "data_as_of": r[11], "last_checked_at": r[12],
                "next_check_at": r[13], "reconnect_by": r[14], "connected_at": r[15], "disconnected_at": r[16],
                "created_at": r[17], "updated_at": r[18], "environment": r[19],
                "changed_at": max(r[18], r[20]) if r[20] else r[18], "credentials": credentials.get(r[0], []),
            }
            for r in rows[:limit]
        ]
        body = json.dumps({"items": items, "next_cursor": "x" if len(rows) > limit else None},
                          cls=DjangoJSONEncoder).encode()
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {"ms": elapsed * 1000, "cpu_ms": elapsed_cpu * 1000, "queries": len(captured.captured_queries),
            "items": len(items), "bytes": len(body)}


def _pass(client: Client, firm_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One pass through every page of the list, each page's floor right after it: the samples, in order."""
    samples, floors = [], []
    cursor = ""
    after = (0, 0)
    while True:
        url = f"/api/v1/connections?limit={PER_PAGE}" + (f"&cursor={cursor}" if cursor else "")
        sample, body = _timed_page(client, url)
        samples.append(sample)
        floor = floor_page(firm_id=firm_id, after=after, limit=PER_PAGE)
        if floor["items"] != len(body["items"]):
            raise RuntimeError(f"the floor read {floor['items']} rows where the page has {len(body['items'])}")
        floors.append(floor)
        cursor = body["next_cursor"] or ""
        if not cursor:
            return samples, floors
        last = body["items"][-1]
        after = (last["household"]["id"], last["id"])


def api_run(state: tuple[Firm, str], results: Results, *, rounds: int, log: Any = print) -> None:
    firm, key = state
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    with override_settings(API_RATE_LIMIT_PER_MINUTE=0):
        _pass(client, firm.pk)  # warm-up
        passes = [_pass(client, firm.pk) for _ in range(rounds)]
    pages = [sample for one, _ in passes for sample in one]
    floors = [sample for _, one in passes for sample in one]
    times = [s["ms"] for s in pages]
    counts = [s["queries"] for s in pages]
    first_pages = [one[0]["ms"] for one, _ in passes]
    last_pages = [one[-1]["ms"] for one, _ in passes]
    median = statistics.median(times)
    floor_median = statistics.median(s["ms"] for s in floors)
    connections = sum(f["items"] for f in passes[0][1])
    log(
        f"  {len(passes[0][0])} pages of {PER_PAGE}: median {median:.1f} ms, p95 {_percentile(times, 95):.1f} ms, "
        f"first page {statistics.median(first_pages):.1f} ms, last {statistics.median(last_pages):.1f} ms; "
        f"{min(counts)}-{max(counts)} queries a page; floor (bare query + json.dumps) {floor_median:.1f} ms"
    )
    results.details["api"] = {
        "connections": connections,
        "per_page": PER_PAGE,
        "pages_per_pass": len(passes[0][0]),
        "passes": rounds,
        "median_ms": median,
        "p95_ms": _percentile(times, 95),
        "first_page_median_ms": statistics.median(first_pages),
        "last_page_median_ms": statistics.median(last_pages),
        "median_sql_ms": statistics.median(s["sql_ms"] for s in pages),
        "median_python_cpu_ms": statistics.median(s["cpu_ms"] for s in pages),
        "floor_median_ms": floor_median,
        "floor_median_cpu_ms": statistics.median(s["cpu_ms"] for s in floors),
        "floor_sql": [FLOOR_ROWS_SQL.strip(), FLOOR_CREDENTIALS_SQL],
        "queries": sorted(set(counts)),
        "sql": pages[-1]["sql"],
        "database": connection.vendor,
    }
    results.compare(
        "api.connections.page_median_ms", median, "ms", floor=floor_median, max_vs_floor=FLOOR_RATIO_TARGET,
        note=f"{connections:,} connections, {PER_PAGE} a page, p95 {_percentile(times, 95):.1f} ms; floor: the same "
        "rows from a bare query, serialised by json.dumps",
    )
    results.check(
        "api.connections.page_median_quiet_ms", round(median, 1), "ms",
        target=f"< {MEDIAN_TARGET_MS:g} ms on a quiet machine", ok=median < MEDIAN_TARGET_MS,
    )
    results.check(
        "api.connections.queries_per_page",
        max(counts),
        "",
        target="the same on every page",
        ok=min(counts) == max(counts),
        note=f"first page {passes[0][0][0]['queries']}, last page {passes[0][0][-1]['queries']}",
    )
