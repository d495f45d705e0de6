"""Check throughput, worker memory and the expiry storm: the engine against a sandbox server.

Both phases run the sandbox as its own gunicorn server (``manage.py
run_sandbox``) and a real Celery worker started with the Procfile's worker
line, on the Redis broker. Their subjects are created through the sandbox's
control API (or its service function, as ``sandbox_create_subject`` does) and
their tokens through the portal's own provider clients over HTTP, exactly as a
connect would: nothing is written into the sandbox's tables behind its back.

Checks: ``n`` Dapi connections as a connect leaves them (a permanent token, so
one probe per check and no renewal, and the accounts the connect read) on up
to 2,000 sandbox logins (several clients' connections may share
a login: a check costs the same either way) are made due together; one sweep (the real task body) claims and
enqueues them; the worker probes each through the sandbox with 50 ms of
injected latency. The ceiling is plain concurrent HTTP calls (``requests``, one
session per thread) to the same endpoint, with the same latency, at the
worker's concurrency.

Storm: ``n`` Bloquo access tokens of the documented one-hour lifetime, really
issued by the sandbox, recorded as if issued an hour ago so that they all
expire within the same minute a few minutes from now (see :func:`storm_setup`);
each connection's renewal is scheduled exactly as the lifecycle schedules it
(:func:`connections.lifecycle.next_check_after_success`). A sweep is sent to
the worker once a minute, as beat does. Every token must be renewed before it
expires, while the sandbox's request log shows no second with more calls than
the app's ``rate_limit_per_second``.
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import requests
from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from connections import lifecycle
from connections.models import Account, Connection, ConnectionEvent, Credential, PeriodicJobRun, ProviderApp, Status
from connections.providers.base import AppConfig, ConnectionState, IssuedCredential
from connections.providers.bloquo import BloquoClient, encode_api_key
from connections.providers.dapi import ACCOUNTS_PATH, DapiClient
from connections.providers.errors import ErrorKind, ProviderError
from sandbox import services as sandbox_services

from . import procs
from .data import _bench_app, load_connections_insert, unschedule_all
from .results import Results
from .sweep import broker_purge

CHECKS_PER_SECOND_TARGET = 150.0
CEILING_FRACTION_TARGET = 0.8
PORTAL_CPU_TARGET_MS = 4.0
WORKER_RSS_TARGET_MB = 400.0
LATENCY_MS = 50
REDIRECT_URI = "http://127.0.0.1:8000/connect/dapi/callback/"
# Sandbox logins behind the check connections (see checks_setup).
LOGINS_MAX = 2_000

Log = Callable[[str], None]


class SandboxControl:
    """A thin client of the sandbox's control API (``/sandbox/_control/``)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        response = self.session.request(method, f"{self.base}/_control/{path}", json=body, params=params or None,
                                        headers=procs.sandbox_control_headers(), timeout=120)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox control {method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def parallel(items: Iterable[Any], work: Callable[[Any], Any], *, threads: int) -> list[Any]:
    """``work`` over ``items`` on a thread pool (HTTP only, no database), results in order."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(work, items))


def retried(work: Callable[[], Any], *, attempts: int = 4) -> Any:
    """``work()``, tried again after a transient failure; the last failure is raised.

    For the setup only: a keep-alive connection the server dropped must not end
    a benchmark before it starts. The measured checks are never retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except (ProviderError, requests.RequestException, RuntimeError) as exc:
            transient = not isinstance(exc, ProviderError) or exc.kind == ErrorKind.TRANSIENT
            if attempt == attempts or not transient:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def worker_concurrency(args: list[str]) -> int:
    """The worker's ``--concurrency`` (celery's default, the number of cores, when not given)."""
    for i, arg in enumerate(args):
        if arg in ("--concurrency", "-c") and i + 1 < len(args):
            return int(args[i + 1])
        if arg.startswith("--concurrency="):
            return int(arg.split("=", 1)[1])
    return os.cpu_count() or 1


def sweep_now() -> int:
    """The sweep's task body, in this process (a fresh slot: earlier sweep slots are forgotten)."""
    from connections import tasks

    PeriodicJobRun.objects.filter(job="sweep").delete()
    return tasks.sweep()


def _db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


# --- Checks ---------------------------------------------------------------------------------------


def checks_setup(*, control: SandboxControl, sandbox_base: str, count: int, logins: int = LOGINS_MAX,
                 log: Log) -> dict[str, Any]:
    """``count`` Dapi connections with real permanent tokens from the sandbox; unscheduled."""
    app_key, app_secret = "bench-checks", secrets.token_urlsafe(24)
    control.call("POST", "apps", {"provider": "dapi", "client_id": app_key, "client_secret": app_secret,
                                  "redirect_uri": REDIRECT_URI})
    app = _bench_app("dapi", name="bench-checks", base_url=f"{sandbox_base}/dapi", client_id=app_key,
                     client_secret=app_secret, redirect_uri=REDIRECT_URI,
                     # Above any rate reached here: the limiter's cost is paid, its limit never reached.
                     rate_limit_per_second=5000.0, rate_tokens=5000.0)
    started = time.perf_counter()
    ids = load_connections_insert(app=app, count=count, platform="binance", label="checks")
    config = AppConfig(provider="dapi", environment="sandbox", base_url=f"{sandbox_base}/dapi", client_id=app_key,
                       client_secret=app_secret, redirect_uri=REDIRECT_URI)
    local = threading.local()

    def login(number: int) -> tuple[str, str, str, str, list[Any]]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = DapiClient(config)
            local.control = SandboxControl(control.base)
        made = local.control.call("POST", "subjects", {"provider": "dapi", "app_key": app_key,
                                                        "username": f"bench-user-{number}"})
        token = client.exchange_token(access_code=made["access_code"], connection_id=made["connection_id"])
        # A connect reads the accounts once (DapiClient.complete_authorization) and stores them.
        state = ConnectionState(platform="binance", credentials={
            "permanent": IssuedCredential(kind="permanent", value=token, issued_at=timezone.now()),
            "user_secret": IssuedCredential(kind="user_secret", value=made["user_secret"], issued_at=timezone.now()),
        })
        accounts = list(client.probe(connection=state))
        return token, made["user_secret"], made["user_id"], made["connection_id"], accounts

    # A failed attempt starts a new Connect login (its access code may be spent).
    logins = parallel(range(min(count, logins)), lambda number: retried(lambda: login(number)), threads=32)
    # Connection i uses login i mod len(logins): every check is a full probe of a real permanent token;
    # sharing a login between clients changes nothing in what a check costs either side.
    linked = [(cid, *logins[i % len(logins)]) for i, cid in enumerate(ids)]
    now = timezone.now()
    Credential.objects.bulk_create(
        [Credential(connection_id=cid, kind=Credential.Kind.PERMANENT, value=token, issued_at=now)
         for cid, token, _, _, _, _ in linked]
        + [Credential(connection_id=cid, kind=Credential.Kind.USER_SECRET, value=secret, issued_at=now)
           for cid, _, secret, _, _, _ in linked],
        batch_size=2000,
    )
    # The accounts the connect read: the checks measured are the routine ones of a
    # connection in service, not its first look.
    Account.objects.bulk_create(
        [Account(connection_id=cid, external_id=a.external_id, name=a.name or a.external_id, currency=a.currency,
                 balance=a.balance, status=a.status, as_of=now)
         for cid, _, _, _, _, accounts in linked for a in accounts],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE connections_connection SET external_account_id = %s, grouping = jsonb_build_object("
            "'connectionID', %s::text), accounts_digest = %s WHERE id = %s",
            [(user_id, dapi_connection, lifecycle.accounts_digest(accounts), cid)
             for cid, _, _, user_id, dapi_connection, accounts in linked],
        )
    sample = random.Random(7).sample(linked, min(len(linked), 500))
    log(f"  {count:,} Dapi connections on {len(logins):,} sandbox logins, linked in "
        f"{time.perf_counter() - started:.0f} s")
    return {"app": app, "ids": ids, "app_secret": app_secret, "logins": len(logins),
            "sample": [(token, secret) for _, token, secret, _, _, _ in sample]}


def ceiling_measure(*, url: str, app_secret: str, sample: list[tuple[str, str]], calls: int,
                    concurrency: int) -> dict[str, Any]:
    """Plain concurrent probes (POST accounts/get) with ``concurrency`` threads: calls per second."""
    local = threading.local()
    statuses: Counter = Counter()
    lock = threading.Lock()

    def call(i: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        token, user_secret = sample[i % len(sample)]
        try:
            response = session.post(url, json={"appSecret": app_secret, "userSecret": user_secret},
                                    headers={"Authorization": f"Bearer {token}"}, timeout=30)
            response.json()
            status: int | str = response.status_code
        except (requests.RequestException, ValueError) as exc:
            status = type(exc).__name__
        with lock:
            statuses[status] += 1

    # Warm-up: every thread opens its keep-alive connection.
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(call, range(concurrency * 2)))
        statuses.clear()
        started = time.perf_counter()
        list(pool.map(call, range(calls)))
        elapsed = time.perf_counter() - started
    return {"calls": calls, "seconds": elapsed, "per_second": calls / elapsed, "statuses": dict(statuses),
            "concurrency": concurrency}


def _cpu_meter(*, sandbox_pid: int, worker_pid: int | None = None) -> procs.CpuMeter:
    groups: dict[str, Any] = {
        "sandbox": lambda: procs.process_tree(sandbox_pid),
        "postgres": procs.database_backends,
        "bench": lambda: [os.getpid()],
    }
    if worker_pid is not None:
        groups["worker"] = lambda: procs.process_tree(worker_pid)
    return procs.CpuMeter(groups).start()


def _per_item_ms(used: dict[str, float], items: int) -> dict[str, float]:
    return {name: round(seconds * 1000 / max(items, 1), 2) for name, seconds in used.items()
            if name not in ("wall", "others")}


def checks_measure(results: Results, *, setup: dict[str, Any], sandbox_base: str, sandbox_pid: int,
                   control: SandboxControl, worker_args: list[str], redis_url: str, count: int, ceiling_calls: int,
                   log: Log = print) -> None:
    """The ceiling, the checks, the ceiling again: the checks' rate against the mean of the two ceilings.

    The two saturate the same two cores, so they cannot run at the same
    moment; measured on both sides of the checks, the ceiling sees the same
    spell of the machine the checks do (both are recorded).
    """
    concurrency = worker_concurrency(worker_args)
    app: ProviderApp = setup["app"]
    unschedule_all(except_app_ids=[app.pk])
    broker_purge(redis_url)
    control.call("POST", "faults", {"provider": "dapi", "kind": "latency", "latency_ms": LATENCY_MS,
                                    "seconds": 3600})

    def ceiling_run(calls: int) -> dict[str, Any]:
        meter = _cpu_meter(sandbox_pid=sandbox_pid)
        ceiling = ceiling_measure(url=f"{sandbox_base}/dapi{ACCOUNTS_PATH}", app_secret=setup["app_secret"],
                                  sample=setup["sample"], calls=calls, concurrency=concurrency)
        used = meter.stop()
        ceiling["cpu_ms_per_call"] = _per_item_ms(used, calls + 2 * concurrency)
        ceiling["other_programs_cores"] = used["others"] / max(used["wall"], 1e-9)
        log(f"  ceiling: {ceiling['per_second']:.0f} calls/s ({ceiling['calls']:,} plain probes, "
            f"{concurrency} threads, {LATENCY_MS} ms latency; statuses {ceiling['statuses']})")
        return ceiling

    before = ceiling_run(max(1, ceiling_calls // 2))

    worker = procs.worker_start(worker_args, name="worker-checks")
    sampler = procs.TreeMemorySampler(worker.pid).start()
    meter = _cpu_meter(sandbox_pid=sandbox_pid, worker_pid=worker.pid)
    cpu: dict[str, float] = {}
    try:
        Connection.objects.filter(provider_app=app).update(next_check_at=timezone.now() - timedelta(seconds=1))
        db_started = _db_now()
        started = time.perf_counter()
        claimed = sweep_now()
        sweep_seconds = time.perf_counter() - started
        done, last_done, last_progress = 0, 0, time.perf_counter()
        finished_at = None
        progress = []
        while True:
            time.sleep(0.25)
            done = Connection.objects.filter(provider_app=app, last_checked_at__gte=db_started).count()
            now = time.perf_counter()
            progress.append((round(now - started, 2), done))
            if done != last_done:
                last_done, last_progress = done, now
            if done >= count:
                finished_at = now
                break
            if now - last_progress > 60 or worker.popen.poll() is not None:
                break
        elapsed = (finished_at or last_progress) - started
        cpu = meter.stop()
    finally:
        sampler.stop()
        worker.stop()
    after = ceiling_run(max(1, ceiling_calls // 2))
    control.call("DELETE", "faults")
    outcomes = procs.worker_outcomes(worker.log_path)
    ceiling_rate = (before["per_second"] + after["per_second"]) / 2

    outcome = dict(Connection.objects.filter(provider_app=app).values_list("status").annotate(n=Count("id")))
    failed = Connection.objects.filter(provider_app=app).exclude(last_error="").count()
    ok = Connection.objects.filter(provider_app=app, status=Status.ACTIVE, last_success_at__gte=db_started).count()
    accounts = Account.objects.filter(connection__provider_app=app).count()
    rate = done / elapsed if elapsed > 0 else 0.0
    log(f"  {done:,} of {count:,} checks in {elapsed:.1f} s: {rate:.0f} checks/s "
        f"(sweep {sweep_seconds:.2f} s for {claimed:,}); {ok:,} ok, {failed:,} with an error, outcomes {outcomes}; "
        f"worker peak RSS {sampler.peak_hwm_mb:.0f} MB over {sampler.processes} process(es)")
    per_check = _per_item_ms(cpu, done)
    per_call = {k: (before["cpu_ms_per_call"].get(k, 0.0) + after["cpu_ms_per_call"].get(k, 0.0)) / 2
                for k in before["cpu_ms_per_call"]}
    # PostgreSQL's backends serve the sandbox too (it keeps its tokens in the same database): what a
    # plain call costs PostgreSQL is the sandbox's part, and the rest of a check's is the portal's.
    postgres_portal = max(0.0, per_check.get("postgres", 0.0) - per_call.get("postgres", 0.0))
    portal = per_check.get("worker", 0.0) + postgres_portal
    others = cpu.get("others", 0.0) / max(cpu.get("wall", 1.0), 1e-9)
    log(f"  CPU per check (ms): {per_check}; per plain call: {per_call}; portal cost per check "
        f"{portal:.2f} ms (worker {per_check.get('worker', 0.0):.2f} + PostgreSQL {postgres_portal:.2f}); "
        f"other programs used {others:.2f} of the machine's {os.cpu_count()} cores meanwhile")
    results.details["checks"] = {
        "worker_args": worker_args, "concurrency": concurrency, "connections": count, "claimed": claimed,
        "logins": setup["logins"],
        "sweep_seconds": sweep_seconds, "worker_outcomes": outcomes, "done": done, "seconds": elapsed,
        "per_second": rate, "ok": ok,
        "with_error": failed, "status_counts": outcome, "accounts_stored": accounts,
        "ceiling_before": before, "ceiling_after": after, "ceiling_per_second": ceiling_rate,
        "worker_peak_rss_sampled_mb": sampler.peak_sampled_mb, "worker_peak_hwm_mb": sampler.peak_hwm_mb,
        "worker_processes": sampler.processes, "cpu_ms_per_check": per_check, "cpu_ms_per_plain_call": per_call,
        "portal_cpu_ms_per_check": {"worker": per_check.get("worker", 0.0), "postgres": postgres_portal,
                                    "total": portal},
        "other_programs_cores": others,
        "cpu_seconds": cpu, "progress": progress[:: max(1, len(progress) // 60)],
    }
    # A few transient failures (a keep-alive connection dropped) still count as checks done; more do not.
    complete = done >= count and ok >= 0.99 * count
    results.compare("checks.per_second", rate, "checks/s", floor=ceiling_rate, min_vs_floor=CEILING_FRACTION_TARGET,
                    note=f"{done:,}/{count:,} done, {ok:,} ok; {' '.join(worker_args[2:])}; floor: plain concurrent "
                    f"HTTP calls to the same endpoint at the same concurrency ({concurrency}) and latency "
                    f"({LATENCY_MS} ms), {before['per_second']:.0f} calls/s before the checks and "
                    f"{after['per_second']:.0f} after")
    if not complete:
        results.figures[-1].passed = False
    results.check("checks.per_second_quiet", round(rate, 1), "checks/s",
                  target=f">= {CHECKS_PER_SECOND_TARGET:g} on a quiet machine",
                  ok=rate >= CHECKS_PER_SECOND_TARGET and complete)
    results.add("checks.portal_cpu_ms_per_check", round(portal, 2), "ms", target=f"< {PORTAL_CPU_TARGET_MS:g} ms",
                passed=portal < PORTAL_CPU_TARGET_MS, floor=round(per_call.get("bench", 0.0), 2),
                note=f"worker {per_check.get('worker', 0.0):.2f} ms + PostgreSQL {postgres_portal:.2f} ms (the "
                f"database's CPU per check less its CPU per plain call, which is the sandbox's); floor: the CPU "
                f"a plain call costs its caller ({per_call.get('bench', 0.0):.2f} ms)")
    results.add("checks.cpu_ms_per_check", round(sum(per_check.values()), 1), "ms",
                note="CPU per check, all processes (the sandbox's included): "
                + ", ".join(f"{k} {v:g}" for k, v in per_check.items())
                + f"; other programs used {others:.2f} cores meanwhile")
    results.check("memory.worker_peak_rss_mb", round(sampler.peak_hwm_mb, 1), "MB",
                  target=f"< {WORKER_RSS_TARGET_MB:g} MB", ok=sampler.peak_hwm_mb < WORKER_RSS_TARGET_MB,
                  note=f"sum of VmHWM over {sampler.processes} process(es); "
                  f"largest sampled sum of VmRSS {sampler.peak_sampled_mb:.0f} MB")


# --- Expiry storm ------------------------------------------------------------------------------------


def storm_setup(*, control: SandboxControl, sandbox_base: str, count: int, rate: float, log: Log) -> dict[str, Any]:
    """``count`` Bloquo connections whose access tokens (one-hour tokens, really issued by the sandbox)
    all expire within the same minute, a few minutes from now.

    As after a bulk import an hour ago: each token is recorded as issued one lifetime before its
    expiry, and that expiry is set ``lead`` seconds from the end of the setup (plus the spread of
    the issuing, at most a minute). The sandbox's own expiry of the same tokens is later, so a late
    renewal is caught by comparing times, not by a failed probe. ``lead`` is the renewal margin the
    client uses for such a token plus the lifecycle's renewal jitter plus 30 s: the first renewals
    fall due half a minute after the setup. Each connection's next check is where the lifecycle
    puts it after a routine probe ten minutes before the renewal point.
    """
    app = _bench_app("bloquo", name="bench-storm", base_url=f"{sandbox_base}/bloquo", client_id="",
                     rate_limit_per_second=rate, rate_tokens=rate, rate_updated_at=None)
    ids = load_connections_insert(app=app, count=count, platform="bloquo", label="storm")
    config = AppConfig(provider="bloquo", environment="sandbox", base_url=f"{sandbox_base}/bloquo")
    local = threading.local()
    started = time.perf_counter()

    # The key pairs through the sandbox's own service (what sandbox_create_subject runs).
    keys = [sandbox_services.subject_create({"provider": "bloquo"})[0] for _ in ids]
    log(f"  {count:,} Bloquo key pairs created in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()

    def connect(item: tuple[int, dict[str, Any]]) -> tuple[int, str, IssuedCredential, IssuedCredential]:
        connection_id, key = item
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = BloquoClient(config)
        access = retried(lambda: client.request_token(key["client_id"], key["client_secret"]))
        api_key = client.issue("api_key", encode_api_key(key["client_id"], key["client_secret"]))
        return connection_id, key["customer_id"], api_key, access

    linked = parallel(list(zip(ids, keys, strict=True)), connect, threads=32)
    issued_seconds = time.perf_counter() - started
    client = BloquoClient(config)
    first_issued = min(access.issued_at for *_, access in linked)
    issue_spread = max((access.issued_at - first_issued).total_seconds() for *_, access in linked)
    squeeze = min(1.0, 55.0 / issue_spread) if issue_spread > 0 else 1.0
    sample = linked[0][3]
    lifetime = sample.expires_at - sample.issued_at
    sample_state = ConnectionState(platform="bloquo", credentials={"api_key": linked[0][2], "access": sample})
    margin = sample.expires_at - client.renewal_due_at(sample_state)
    jitter = timedelta(seconds=lifecycle.tunables().renew_jitter_seconds)
    lead = margin + jitter + timedelta(seconds=30)
    setup_end = timezone.now()
    rows, schedule, expiries = [], [], {}
    for cid, customer_id, api_key, access in linked:
        expires_at = setup_end + lead + (access.issued_at - first_issued) * squeeze
        recorded = IssuedCredential(kind=access.kind, value=access.value, issued_at=expires_at - lifetime,
                                    expires_at=expires_at)
        for credential in (api_key, recorded):
            rows.append(Credential(connection_id=cid, kind=credential.kind, value=credential.value,
                                   issued_at=credential.issued_at, expires_at=credential.expires_at))
        state = ConnectionState(platform="bloquo", external_account_id=customer_id,
                                credentials={"api_key": api_key, "access": recorded})
        renewal_due = client.renewal_due_at(state)
        next_check = lifecycle.rules.next_check_after_success(
            renewal_due_at=renewal_due, now=renewal_due - timedelta(minutes=10), tunables=lifecycle.tunables()
        )
        schedule.append((customer_id, next_check, cid))
        expiries[cid] = expires_at
    Credential.objects.bulk_create(rows, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE connections_connection SET external_account_id = %s, next_check_at = %s WHERE id = %s", schedule
        )
    spread = (max(expiries.values()) - min(expiries.values())).total_seconds()
    first_due, last_due = min(s[1] for s in schedule), max(s[1] for s in schedule)
    log(f"  {count:,} one-hour Bloquo tokens issued in {issued_seconds:.0f} s; recorded to expire within "
        f"{spread:.0f} s of each other from {min(expiries.values()):%H:%M:%S}; "
        f"renewals due {first_due:%H:%M:%S}-{last_due:%H:%M:%S} "
        f"(renewal margin {margin.total_seconds():.0f} s + jitter up to {jitter.total_seconds():.0f} s)")
    return {"app": app, "ids": ids, "expiries": expiries, "expiry_spread_seconds": spread, "first_due": first_due,
            "last_due": last_due, "token_lifetime_seconds": lifetime.total_seconds(),
            "renewal_margin_seconds": margin.total_seconds(), "issue_seconds": issued_seconds}


def _rate_per_second(stamps: list[datetime], *, limit: float) -> dict[str, Any]:
    """Calls per calendar second (the maximum, the busiest seconds, how many went over ``limit``)
    and the busiest sliding 1 s window."""
    if not stamps:
        return {"max_per_second": 0, "max_sliding_window": 0, "seconds": 0, "mean_busy_second": 0.0,
                "seconds_over_limit": 0}
    per_second = Counter(int(s.timestamp()) for s in stamps)
    ordered = sorted(s.timestamp() for s in stamps)
    sliding, j = 0, 0
    for i, t in enumerate(ordered):
        while ordered[j] <= t - 1.0:
            j += 1
        sliding = max(sliding, i - j + 1)
    busy = list(per_second.values())
    return {"max_per_second": max(busy), "max_sliding_window": sliding, "seconds": len(per_second),
            "mean_busy_second": statistics.mean(busy), "top_seconds": per_second.most_common(5),
            "seconds_over_limit": sum(1 for n in busy if n > limit),
            "per_second": sorted(per_second.items())}


def run_storm(results: Results, *, sandbox_base: str, control: SandboxControl, worker_args: list[str],
              redis_url: str, count: int, rate: float, log: Log = print) -> None:
    from connections import tasks

    control.call("DELETE", "faults")
    setup = storm_setup(control=control, sandbox_base=sandbox_base, count=count, rate=rate, log=log)
    app: ProviderApp = setup["app"]
    ids: list[int] = setup["ids"]
    expiries: dict[int, datetime] = setup["expiries"]
    unschedule_all(except_app_ids=[app.pk])
    broker_purge(redis_url)  # also empties the rate limiter's bucket
    PeriodicJobRun.objects.filter(job="sweep").delete()
    watch_from = _db_now()
    deadline = max(expiries.values()) + timedelta(seconds=30)
    worker = procs.worker_start(worker_args, name="worker-storm")
    sweeps: list[str] = []
    renewed = 0
    try:
        next_sweep = time.time()
        while timezone.now() < deadline:
            if time.time() >= next_sweep:
                # As beat does: connections.sweep every 60 s, through the broker to the worker.
                tasks.sweep.apply_async(expires=55)
                sweeps.append(timezone.now().isoformat(timespec="seconds"))
                next_sweep = (int(time.time()) // 60 + 1) * 60 + 0.5
            time.sleep(1.0)
            renewed = Credential.objects.filter(connection__provider_app=app, kind=Credential.Kind.ACCESS,
                                                issued_at__gte=watch_from).count()
            busy = Connection.objects.filter(provider_app=app).exclude(lease_owner="").exists()
            if renewed >= count and not busy:
                break
        time.sleep(2.0)
    finally:
        worker.stop()
    finished = timezone.now()
    outcomes = procs.worker_outcomes(worker.log_path)
    # The storm wrote some ten thousand events in minutes: without fresh statistics PostgreSQL
    # plans the reads below as if there were none (a nested loop over every connection of the app
    # for each event, minutes instead of milliseconds).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE connections_connectionevent")

    first_renewal = dict(
        ConnectionEvent.objects.filter(connection__provider_app=app, kind=ConnectionEvent.Kind.RENEWED,
                                       created_at__gte=watch_from)
        .values_list("connection_id").annotate(first=Min("created_at"))
    )
    in_time = [cid for cid in ids if cid in first_renewal and first_renewal[cid] < expiries[cid]]
    margins = sorted((expiries[cid] - first_renewal[cid]).total_seconds() for cid in ids if cid in first_renewal)
    failed_checks = ConnectionEvent.objects.filter(connection__provider_app=app,
                                                   kind=ConnectionEvent.Kind.CHECK_FAILED).count()
    statuses = dict(Connection.objects.filter(provider_app=app).values_list("status").annotate(n=Count("id")))
    log_rows = control.call("GET", "requests", provider="bloquo", since=watch_from.isoformat())["requests"]
    stamps = [parse_datetime(row["at"]) for row in log_rows]
    paths = Counter(row["path"] for row in log_rows)
    outbound = _rate_per_second(stamps, limit=rate)
    seconds = (finished - watch_from).total_seconds()
    latest = f"{margins[0]:.0f} s before expiry" if margins else "none"
    log(f"  {len(in_time):,} of {count:,} renewed before expiry (the latest {latest}); "
        f"{len(log_rows):,} calls to Bloquo, at most {outbound['max_per_second']} in one second "
        f"(limit {rate:g}/s); {failed_checks} failed checks; worker outcomes {outcomes}; {seconds:.0f} s, "
        f"{len(sweeps)} sweeps")
    results.details["storm"] = {
        "tokens": count, "rate_limit_per_second": rate, "token_lifetime_seconds": setup["token_lifetime_seconds"],
        "renewal_margin_seconds": setup["renewal_margin_seconds"],
        "expiry_spread_seconds": setup["expiry_spread_seconds"], "first_due": setup["first_due"],
        "last_due": setup["last_due"], "first_expiry": min(expiries.values()), "last_expiry": max(expiries.values()),
        "renewed_in_time": len(in_time), "renewed_at_all": len(first_renewal), "margin_seconds_min": margins[:1],
        "last_renewal": max(first_renewal.values()) if first_renewal else None,
        "margin_seconds_median": statistics.median(margins) if margins else None, "failed_checks": failed_checks,
        "statuses": statuses, "calls": len(log_rows), "calls_by_path": dict(paths), "outbound": outbound,
        "sweeps": sweeps, "seconds": seconds, "worker_args": worker_args, "worker_outcomes": outcomes,
    }
    results.check("storm.renewed_before_expiry", len(in_time), f"of {count:,}", target=f"= {count:,}",
                  ok=len(in_time) == count,
                  note=f"{count:,} tokens expiring within {setup['expiry_spread_seconds']:.0f} s; "
                  f"the latest renewal came {latest}; outcomes {outcomes}")
    results.check("storm.peak_calls_per_second", outbound["max_per_second"], "calls/s",
                  target=f"<= {rate:g} (the app's limit)", ok=outbound["max_per_second"] <= rate,
                  note=f"{len(log_rows):,} calls over {outbound['seconds']} s; {outbound['seconds_over_limit']} "
                  f"second(s) over the limit; busiest sliding 1 s window {outbound['max_sliding_window']}")
