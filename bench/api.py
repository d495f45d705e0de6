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
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from api.keys import api_key_create
from connections import crypto
from connections.models import Firm

from .data import BenchWorld, _exec, _insert_connections, _insert_households
from .pages import _percentile
from .results import Results

PER_PAGE = 100
MEDIAN_TARGET_MS = 60.0


def api_firm_build(world: BenchWorld, *, connections: int, log: Any = print) -> tuple[Firm, str]:
    """A firm of ``connections`` connections (five per household), a credential and an event each, and a key."""
    firm, _ = Firm.objects.get_or_create(slug="bench-api", defaults={"name": "Bench API firm"})
    first, last = _insert_households(firm_id=firm.pk, count=connections // 5, adviser_id=None, prefix="api")
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
    _exec("ANALYZE")
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


def _pass(client: Client) -> list[dict[str, Any]]:
    """One pass through every page of the list; the samples of each page, in order."""
    samples = []
    cursor = ""
    while True:
        url = f"/api/v1/connections?limit={PER_PAGE}" + (f"&cursor={cursor}" if cursor else "")
        sample, body = _timed_page(client, url)
        samples.append(sample)
        cursor = body["next_cursor"] or ""
        if not cursor:
            return samples


def run_api(world: BenchWorld, results: Results, *, connections: int, rounds: int, log: Any = print) -> None:
    _firm, key = api_firm_build(world, connections=connections, log=log)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    with override_settings(API_RATE_LIMIT_PER_MINUTE=0):
        _pass(client)  # warm-up
        passes = [_pass(client) for _ in range(rounds)]
    pages = [sample for one in passes for sample in one]
    times = [s["ms"] for s in pages]
    counts = [s["queries"] for s in pages]
    first_pages = [one[0]["ms"] for one in passes]
    last_pages = [one[-1]["ms"] for one in passes]
    median = statistics.median(times)
    log(
        f"  {len(passes[0])} pages of {PER_PAGE}: median {median:.1f} ms, p95 {_percentile(times, 95):.1f} ms, "
        f"first page {statistics.median(first_pages):.1f} ms, last {statistics.median(last_pages):.1f} ms; "
        f"{min(counts)}-{max(counts)} queries a page"
    )
    results.details["api"] = {
        "connections": connections,
        "per_page": PER_PAGE,
        "pages_per_pass": len(passes[0]),
        "passes": rounds,
        "median_ms": median,
        "p95_ms": _percentile(times, 95),
        "first_page_median_ms": statistics.median(first_pages),
        "last_page_median_ms": statistics.median(last_pages),
        "median_sql_ms": statistics.median(s["sql_ms"] for s in pages),
        "median_python_cpu_ms": statistics.median(s["cpu_ms"] for s in pages),
        "queries": sorted(set(counts)),
        "sql": pages[-1]["sql"],
        "database": connection.vendor,
    }
    results.add("api.connections.pages", len(passes[0]), "", note=f"{connections:,} connections, {PER_PAGE} a page")
    results.check(
        "api.connections.page_median_ms",
        round(median, 1),
        "ms",
        target=f"< {MEDIAN_TARGET_MS:g} ms",
        ok=median < MEDIAN_TARGET_MS,
    )
    results.add("api.connections.page_p95_ms", round(_percentile(times, 95), 1), "ms")
    results.check(
        "api.connections.queries_per_page",
        max(counts),
        "",
        target="the same on every page",
        ok=min(counts) == max(counts),
        note=f"first page {passes[0][0]['queries']}, last page {passes[0][-1]['queries']}",
    )
