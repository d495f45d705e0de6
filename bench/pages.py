"""Pages: server time and SQL queries of the dashboard and a household page.

In-process, through Django's test client (``force_login``), so the figure is
the server's own time (URL routing, middleware, views, queries, templates)
without a network or a WSGI server in front. Each page is requested a few
times to warm caches, then ``requests`` times for each adviser, the two
advisers in turn, each request inside a ``CaptureQueriesContext`` that counts
its SQL queries.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from connections.models import Household

from .data import BenchWorld
from .results import Results

MEDIAN_TARGET_MS = 60.0
SCALING_TARGET = 1.5


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _timed_get(client: Client, url: str) -> dict[str, Any]:
    with CaptureQueriesContext(connection) as captured:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return {
        "ms": elapsed * 1000,
        "cpu_ms": elapsed_cpu * 1000,
        "sql_ms": sum(float(q["time"]) for q in captured.captured_queries) * 1000,
        "queries": len(captured.captured_queries),
        "bytes": len(response.content),
        "sql": [q["sql"][:300] for q in captured.captured_queries],
    }


def _summary(url: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    times = [s["ms"] for s in samples]
    counts = [s["queries"] for s in samples]
    return {
        "url": url,
        "requests": len(samples),
        "median_ms": statistics.median(times),
        "p95_ms": _percentile(times, 95),
        "min_ms": min(times),
        # Where the time went: this process's CPU (Python, templates) and the queries' round trips.
        "median_python_cpu_ms": statistics.median(s["cpu_ms"] for s in samples),
        "median_sql_ms": statistics.median(s["sql_ms"] for s in samples),
        "max_ms": max(times),
        "queries": max(counts),
        "queries_min": min(counts),
        "bytes": samples[-1]["bytes"],
        "sql": samples[-1]["sql"],
    }


def pages_measure(targets: list[tuple[Client, str]], *, requests: int, warmup: int) -> list[dict[str, Any]]:
    """Median and p95 server time (ms) and query counts of each ``(client, url)``, ``requests`` GETs each.

    The targets are requested in turn (a, b, a, b, ...), so a slow spell of a
    shared machine weighs on every target alike and their ratio stays fair.
    """
    for _ in range(warmup):
        for client, url in targets:
            _timed_get(client, url)
    samples: list[list[dict[str, Any]]] = [[] for _ in targets]
    for _ in range(requests):
        for index, (client, url) in enumerate(targets):
            samples[index].append(_timed_get(client, url))
    return [_summary(url, found) for (_, url), found in zip(targets, samples, strict=True)]


def run_pages(world: BenchWorld, results: Results, *, requests: int = 30, warmup: int = 5, log=print) -> None:
    User = get_user_model()
    visitors = []
    for username in (world.small_adviser, world.big_adviser):
        user = User.objects.get(username=username)
        households = Household.objects.filter(advisers=user)
        count = households.count()
        household = households.order_by("pk")[count // 2]
        client = Client()
        client.force_login(user)
        visitors.append((count, client, household))
    sizes: dict[int, dict[str, Any]] = {count: {} for count, _, _ in visitors}
    for page in ("dashboard", "household"):
        targets = [
            (client, "/" if page == "dashboard" else f"/households/{household.pk}/")
            for _, client, household in visitors
        ]
        for (count, _, _), m in zip(visitors, pages_measure(targets, requests=requests, warmup=warmup), strict=True):
            sizes[count][page] = m
            log(f"  {page} with {count:,} households: median {m['median_ms']:.1f} ms, "
                f"p95 {m['p95_ms']:.1f} ms, {m['queries']} queries (median {m['median_sql_ms']:.1f} ms in SQL, "
                f"{m['median_python_cpu_ms']:.1f} ms of Python CPU)")
    results.details["pages"] = {str(k): v for k, v in sizes.items()}
    small, big = sorted(sizes)
    for page in ("dashboard", "household"):
        s, b = sizes[small][page], sizes[big][page]
        results.add(f"pages.{page}.{small}.median_ms", round(s["median_ms"], 1), "ms")
        results.add(f"pages.{page}.{small}.p95_ms", round(s["p95_ms"], 1), "ms")
        results.add(f"pages.{page}.{small}.queries", s["queries"], "")
        results.check(f"pages.{page}.{big}.median_ms", round(b["median_ms"], 1), "ms",
                      target=f"< {MEDIAN_TARGET_MS:g} ms", ok=b["median_ms"] < MEDIAN_TARGET_MS)
        results.add(f"pages.{page}.{big}.p95_ms", round(b["p95_ms"], 1), "ms")
        stable = s["queries"] == s["queries_min"] and b["queries"] == b["queries_min"]
        results.check(f"pages.{page}.{big}.queries", b["queries"], "",
                      target=f"= {s['queries']} (as at {small:,})", ok=b["queries"] == s["queries"] and stable,
                      note="" if stable else "query count varied between requests")
        ratio = b["median_ms"] / s["median_ms"] if s["median_ms"] else None
        results.check(f"pages.{page}.time_ratio_{big}_vs_{small}", round(ratio, 2) if ratio else None, "x",
                      target=f"<= {SCALING_TARGET:g}", ok=ratio is not None and ratio <= SCALING_TARGET)
