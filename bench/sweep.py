"""Sweep: claim and enqueue every due connection, at 100,000 and 1,000,000 connections.

The sweep measured is the real task body, ``connections.tasks.sweep`` called
in-process (its slot lock, batches of claims, and the check messages carrying
every claimed id published to the Redis broker, which is then read back to
make sure every id arrived). Between runs the
claimed rows are put back to due (:func:`bench.data.sweep_claims_release`), so
every run sees the same due set, and the broker's database is emptied.

Beside it, measured in turn with it: its **floor**, one ``UPDATE ... RETURNING``
that leases exactly the due rows (:func:`floor_update`; the target is the
sweep within 1.5x of it). Also the bare SQL ``SELECT`` of the same ids (a read:
what no claim can be faster than), ``EXPLAIN (ANALYZE, BUFFERS)`` of the claim query as the sweep
really sends it, and the sweep's memory (tracemalloc peak, and the growth of
the process's peak RSS) at both sizes.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import statistics
import time
import tracemalloc
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from .data import due_count, sweep_claims_release
from .procs import hwm_mb, hwm_reset, rss_mb
from .results import Results

TIME_TARGET_S = 0.5
FLOOR_RATIO_TARGET = 1.5
FLOOR_OWNER = "sweep:floor"
MEMORY_FLAT_TARGET = 1.5


def broker_purge(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def broker_queued(redis_url: str, queue: str = "celery") -> int:
    """How many connection ids the queued check messages carry (one id per message, or a chunk of ids)."""
    import redis

    ids = 0
    for raw in redis.Redis.from_url(redis_url).lrange(queue, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        first = args[0] if args else None
        ids += len(first) if isinstance(first, list) else 1
    return ids


def sweep_timed(redis_url: str) -> dict[str, Any]:
    """One sweep from a released state: seconds, rows claimed, ids that reached the broker."""
    from connections import tasks

    sweep_claims_release()
    broker_purge(redis_url)
    gc.collect()
    started = time.perf_counter()
    claimed = tasks.sweep()
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "claimed": claimed, "queued": broker_queued(redis_url)}


def claim_only(repeats: int = 3) -> dict[str, Any]:
    """The sweep's own loop (:func:`connections.jobs.sweep_run`) with a publisher that sends nothing.

    What the claims cost on their own: the rest of a sweep's time is building
    and publishing the check messages.
    """
    from connections import jobs

    times, claimed = [], 0
    for _ in range(repeats):
        sweep_claims_release()
        started = time.perf_counter()
        claimed = jobs.sweep_run(publish=lambda ids: None)
        times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times), "claimed": claimed, "all_seconds": times}


def sweep_memory(redis_url: str) -> dict[str, Any]:
    """tracemalloc peak of one sweep, and how much it raised the process's peak RSS."""
    from connections import tasks

    sweep_claims_release()
    broker_purge(redis_url)
    gc.collect()
    can_reset = hwm_reset()
    rss_before = _self_rss()
    tracemalloc.start()
    tracemalloc.reset_peak()
    claimed = tasks.sweep()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = _self_hwm()
    return {
        "claimed": claimed,
        "tracemalloc_peak_mb": peak / 2**20,
        "rss_peak_growth_mb": (peak_rss - rss_before) if can_reset else None,
    }


def _self_rss() -> float:
    return rss_mb(os.getpid())


def _self_hwm() -> float:
    return hwm_mb(os.getpid())


def bare_select(repeats: int = 5) -> dict[str, Any]:
    """The due ids by plain SQL, through the same partial index: median seconds over ``repeats``."""
    sweep_claims_release()
    times, rows = [], 0
    for _ in range(repeats):
        now = timezone.now()
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                "SELECT id FROM connections_connection WHERE next_check_at IS NOT NULL AND next_check_at <= %s "
                "ORDER BY next_check_at",
                [now],
            )
            rows = len(cursor.fetchall())
            times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times), "rows": rows, "all_seconds": times}


def floor_update() -> dict[str, Any]:
    """The floor: one ``UPDATE ... RETURNING`` that leases exactly the due rows (from a released state).

    The same condition as the sweep's claim (due and not claimed), the same
    three columns written (owner, lease end, next check at the lease end), in
    one autocommitted statement: what claiming the due set cannot be faster
    than. Nothing is published.
    """
    from connections.lifecycle import tunables

    sweep_claims_release()
    now = timezone.now()
    until = now + timedelta(seconds=tunables().sweep_lease_seconds)
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            "UPDATE connections_connection SET lease_owner = %s, lease_until = %s, next_check_at = %s "
            "WHERE next_check_at IS NOT NULL AND next_check_at <= %s AND (lease_until IS NULL OR lease_until < %s) "
            "RETURNING id",
            [FLOOR_OWNER, until, until, now, now],
        )
        rows = len(cursor.fetchall())
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows": rows}


def claim_query_sql(redis_url: str) -> str:
    """The claim (its ``SELECT ... FOR UPDATE SKIP LOCKED``, inside an UPDATE on PostgreSQL) exactly as sent."""
    from connections import tasks

    sweep_claims_release()
    broker_purge(redis_url)
    with CaptureQueriesContext(connection) as captured:
        tasks.sweep()
    for query in captured.captured_queries:
        sql = query["sql"]
        if "FOR UPDATE" in sql.upper() and "connections_connection" in sql:
            return sql
    raise RuntimeError("The sweep sent no claim (FOR UPDATE) on connections_connection.")


def explain(sql: str) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of ``sql`` in a transaction that is rolled back (the rows stay unclaimed)."""
    sweep_claims_release()
    plan = ""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            raise _Rollback
    except _Rollback:
        pass
    uses_index = any(
        ("Index Scan" in line or "Index Only Scan" in line) and "connection_due_idx" in line
        for line in plan.splitlines()
    )
    return {"plan": plan, "index_scan_on_due_idx": uses_index}


class _Rollback(Exception):
    pass


def run_sweep_small(results: Results, *, redis_url: str, log=print) -> dict[str, Any]:
    """At the firm's size (before the world grows): one timed sweep, one measured for memory."""
    total = _total()
    due = due_count()
    sweep_timed(redis_url)  # warm-up: imports, the broker connection, plan caches
    timed = sweep_timed(redis_url)
    memory = sweep_memory(redis_url)
    log(f"  {total:,} connections, {due:,} due: sweep {timed['seconds']:.3f} s, "
        f"tracemalloc peak {memory['tracemalloc_peak_mb']:.2f} MB")
    sweep_claims_release()
    broker_purge(redis_url)
    small = {"connections": total, "due": due, "timed": timed, "memory": memory}
    results.details.setdefault("sweep", {})["small"] = small
    results.add(f"sweep.{_label(total)}.seconds", round(timed["seconds"], 3), "s",
                note=f"{timed['claimed']:,} claimed and enqueued")
    results.add(f"sweep.{_label(total)}.tracemalloc_peak_mb", round(memory["tracemalloc_peak_mb"], 2), "MB")
    return small


def run_sweep_big(results: Results, *, redis_url: str, small: dict[str, Any] | None, repeats: int = 3,
                  log=print) -> None:
    """The sweep and its floor in turn (sweep, floor, sweep, floor, ...), each from the same released state."""
    total = _total()
    due = due_count()
    sweep_timed(redis_url)  # warm-up
    floor_update()
    runs, floors = [], []
    for _ in range(repeats):
        runs.append(sweep_timed(redis_url))
        floors.append(floor_update())
    seconds = statistics.median(r["seconds"] for r in runs)
    floor = statistics.median(f["seconds"] for f in floors)
    claimed = runs[0]["claimed"]
    queued_ok = all(r["queued"] == r["claimed"] == due for r in runs) and all(f["rows"] == due for f in floors)
    bare = bare_select()
    claims = claim_only(repeats=repeats)
    sql = claim_query_sql(redis_url)
    plan = explain(sql)
    memory = sweep_memory(redis_url)
    sweep_claims_release()
    broker_purge(redis_url)
    each = [round(r["seconds"], 3) for r in runs]
    log(f"  {total:,} connections, {due:,} due: sweep median {seconds:.3f} s of {each}, "
        f"floor (one UPDATE ... RETURNING) {floor:.3f} s of {[round(f['seconds'], 3) for f in floors]}, "
        f"claims alone {claims['seconds']:.3f} s, bare select {bare['seconds']:.4f} s, "
        f"index scan: {plan['index_scan_on_due_idx']}, tracemalloc peak {memory['tracemalloc_peak_mb']:.2f} MB")
    results.details.setdefault("sweep", {})["big"] = {
        "connections": total, "due": due, "runs": runs, "floor_runs": floors, "bare_select": bare,
        "claim_only": claims, "claim_sql": sql, "explain": plan["plan"], "memory": memory,
    }
    label = _label(total)
    results.compare(f"sweep.{label}.seconds", seconds, "s", floor=floor, max_vs_floor=FLOOR_RATIO_TARGET, digits=3,
                    note=f"{claimed:,} due claimed and enqueued (median of {repeats}); floor: one UPDATE ... "
                    "RETURNING leasing the same rows" + ("" if queued_ok else "; NOT every due id reached the broker"))
    if not queued_ok:
        results.figures[-1].passed = False
    results.check(f"sweep.{label}.seconds_quiet", round(seconds, 3), "s",
                  target=f"< {TIME_TARGET_S:g} s on a quiet machine", ok=seconds < TIME_TARGET_S and queued_ok)
    results.check(f"sweep.{label}.claim_uses_due_index", "yes" if plan["index_scan_on_due_idx"] else "no", "",
                  target="index scan on connection_due_idx", ok=plan["index_scan_on_due_idx"])
    results.compare(f"sweep.{label}.claim_only_seconds", claims["seconds"], "s", floor=floor, digits=3,
                    note="the sweep's claim loop with nothing published (the rest is enqueueing)")
    results.compare(f"sweep.{label}.bare_select_seconds", bare["seconds"], "s", floor=floor, digits=4,
                    note=f"{bare['rows']:,} ids by plain SQL (reads only: no lease written)")
    results.add(f"sweep.{label}.tracemalloc_peak_mb", round(memory["tracemalloc_peak_mb"], 2), "MB")
    if small is not None:
        small_peak = small["memory"]["tracemalloc_peak_mb"]
        growth = memory["tracemalloc_peak_mb"] / small_peak if small_peak else None
        results.check(
            f"sweep.memory_{_label(total)}_vs_{_label(small['connections'])}",
            round(growth, 2) if growth else None, "x",
            target=f"<= {MEMORY_FLAT_TARGET:g} (flat)", ok=growth is not None and growth <= MEMORY_FLAT_TARGET,
            note=f"tracemalloc peak {small_peak:.2f} MB -> {memory['tracemalloc_peak_mb']:.2f} MB "
            f"with {due / max(small['due'], 1):.0f}x the due rows",
        )


def _total() -> int:
    from .data import connections_count

    return connections_count()


def _label(total: int) -> str:
    if total >= 1_000_000 and total % 1_000_000 == 0:
        return f"{total // 1_000_000}M"
    if total >= 1000 and total % 1000 == 0:
        return f"{total // 1000}k"
    return str(total)
