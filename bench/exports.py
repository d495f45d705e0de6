"""Exports: the connections CSV streamed through the real view, at about 1,000 and 100,000 rows.

The small export is the small adviser's (``small_households`` x 5 connections:
1,000 in a full run), the large one the firm admin's whole firm
(``firm_connections``: 100,000). Each request goes through the whole stack (the
test client, middleware, the view, its audit row, ``StreamingHttpResponse``)
and the body is read chunk by chunk, as a browser would, and dropped. Memory
is the tracemalloc peak over the request and the reading (a run of its own:
tracing slows Python several times over, so times come from untraced runs):
flat means the large export's peak is within 1.5x of the small one's,
whatever the 100x in rows.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client

from connections.models import Membership

from .data import BenchWorld, Log
from .results import Results

MEMORY_FLAT_TARGET = 1.5


def _export(username: str, *, traced: bool) -> dict[str, Any]:
    """One export read to the end; with ``traced``, its tracemalloc peak (which slows Python
    several times over, so the time comes from an untraced run)."""
    browser = Client()
    browser.force_login(get_user_model().objects.get(username=username))
    gc.collect()
    if traced:
        tracemalloc.start()
        tracemalloc.reset_peak()
    started = time.perf_counter()
    response = browser.get("/reports/exports/connections.csv")
    lines = size = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
    seconds = time.perf_counter() - started
    peak = 0
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert response.status_code == 200, response.status_code
    return {"rows": lines - 1, "mb": size / 2**20, "seconds": seconds, "peak_mb": peak / 2**20}


def run_exports(world: BenchWorld, results: Results, *, log: Log = print) -> None:
    admin, _ = get_user_model().objects.get_or_create(username="bench-admin")
    Membership.objects.update_or_create(
        user=admin, defaults={"firm_id": world.firm_id, "role": Membership.Role.FIRM_ADMIN}
    )
    _export(world.small_adviser, traced=False)  # warm: imports, template and query caches
    small = {
        **_export(world.small_adviser, traced=True),
        "seconds": _export(world.small_adviser, traced=False)["seconds"],
    }
    big = {**_export(admin.username, traced=True), "seconds": _export(admin.username, traced=False)["seconds"]}
    for m in (small, big):
        log(
            f"  connections CSV, {m['rows']:,} rows: {m['mb']:.1f} MB in {m['seconds']:.2f} s "
            f"({m['rows'] / max(m['seconds'], 1e-9):,.0f} rows/s), tracemalloc peak {m['peak_mb']:.2f} MB"
        )
        results.add(f"exports.connections_csv.{m['rows']}.peak_mb", round(m["peak_mb"], 2), "MB")
        results.add(f"exports.connections_csv.{m['rows']}.seconds", round(m["seconds"], 2), "s")
    ratio = big["peak_mb"] / max(small["peak_mb"], 1e-9)
    results.check(
        "exports.connections_csv.memory_ratio",
        round(ratio, 2),
        "x",
        target=f"<= {MEMORY_FLAT_TARGET}x ({big['rows']:,} rows vs {small['rows']:,})",
        ok=ratio <= MEMORY_FLAT_TARGET and big["rows"] >= 50 * small["rows"],
    )
    results.details["exports"] = {"small": small, "big": big}
