"""``make bench``: the portal and the engine at scale, measured against their targets.

    python -m bench.run [--quick] [--only pages,exports,sweep,checks,storm] [--worker "ARGS"] [--port 8200]
                        [--checks N] [--ceiling-calls N] [--storm-rate R] [--output PATH]
    make bench BENCH_ARGS="--only checks --checks 3000"

On PostgreSQL only: ``DATABASE_URL`` when it names a PostgreSQL database,
otherwise ``portal_bench`` on postgres://postgres@127.0.0.1:5432 (created when
missing). The broker is Redis (``BENCH_REDIS_URL``, default database 11 on
127.0.0.1:6379, emptied by the benchmark). The world is rebuilt on every run
(:mod:`bench.data`), the database migrated first.

Phases (``--only`` picks some; ``memory`` means sweep and checks):

* ``pages``: dashboard and household page for advisers with 200 and 2,000
  households in a firm of 100,000 connections (:mod:`bench.pages`);
* ``exports``: the connections CSV streamed at 1,000 and 100,000 rows, memory flat
  (:mod:`bench.exports`);
* ``api``: ``GET /api/v1/connections`` paged through a firm of 10,000
  connections at 100 a page: the median page and the queries per page (:mod:`bench.api`);
* ``sweep``: 1% of 100,000 and then 1,000,000 connections due (:mod:`bench.sweep`);
* ``checks``: 20,000 checks through a real worker against the sandbox server
  with 50 ms latency, the raw ceiling, the worker's peak memory (:mod:`bench.load`);
* ``storm``: 10,000 tokens expiring within a minute, the app limited to 100
  calls a second (:mod:`bench.load`).

The worker is started with the Procfile's ``worker`` line unless ``--worker``
gives other celery arguments (that is how the Procfile's settings were chosen).
The sandbox server takes the first free port in 8200-8209. Servers' logs go to
``var/bench/``; every server the benchmark starts, it stops.

``--quick`` runs everything smaller (a smoke test of the harness; its figures
are not the targets' sizes). Prints a table of figure / value / target / pass
and writes ``bench/results.json``; exits 1 only when a phase could not run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .env import bench_env_setup

PHASES = ("pages", "exports", "api", "sweep", "checks", "storm")


@dataclass(frozen=True)
class Sizes:
    firm_connections: int
    big_households: int
    small_households: int
    total_connections: int
    page_requests: int
    checks: int
    ceiling_calls: int
    storm_tokens: int
    storm_rate: float
    api_connections: int
    api_rounds: int


FULL = Sizes(firm_connections=100_000, big_households=2_000, small_households=200, total_connections=1_000_000,
             page_requests=30, checks=20_000, ceiling_calls=6_000, storm_tokens=10_000, storm_rate=100.0,
             api_connections=10_000, api_rounds=3)
QUICK = Sizes(firm_connections=20_000, big_households=400, small_households=40, total_connections=100_000,
              page_requests=30, checks=2_000, ceiling_calls=1_000, storm_tokens=1_000, storm_rate=20.0,
              api_connections=10_000, api_rounds=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of the harness")
    parser.add_argument("--only", default="",
                        help=f"comma-separated phases: {', '.join(PHASES)} (memory = sweep,checks)")
    parser.add_argument("--worker", default="", help="celery arguments instead of the Procfile's worker line")
    parser.add_argument("--port", type=int, default=0,
                        help="sandbox server port (default: the first free in 8200-8209)")
    parser.add_argument("--checks", type=int, default=0, help="override the number of checks")
    parser.add_argument("--ceiling-calls", type=int, default=0, help="override the number of plain calls")
    parser.add_argument("--output", default="", help="write the results there instead of bench/results.json")
    parser.add_argument("--storm-rate", type=float, default=0.0, help="override the storm app's rate limit")
    args = parser.parse_args(argv)
    chosen = set()
    for name in filter(None, (p.strip() for p in args.only.split(","))):
        if name == "memory":
            chosen |= {"sweep", "checks"}
        elif name in PHASES:
            chosen.add(name)
        else:
            parser.error(f"unknown phase {name!r}")
    args.phases = [p for p in PHASES if p in chosen] if chosen else list(PHASES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.checks:
        sizes = Sizes(**{**sizes.__dict__, "checks": args.checks})
    if args.ceiling_calls:
        sizes = Sizes(**{**sizes.__dict__, "ceiling_calls": args.ceiling_calls})
    if args.storm_rate:
        sizes = Sizes(**{**sizes.__dict__, "storm_rate": args.storm_rate})
    env = bench_env_setup()

    import django

    django.setup()
    from django.core.management import call_command

    from . import procs
    from .data import world_build, world_grow
    from .results import Results, machine_info

    started = time.perf_counter()
    results = Results()
    log = _logger(started)
    log(f"database {env.database_url.rsplit('@', 1)[-1]}, broker {env.redis_url}; phases: {', '.join(args.phases)}"
        + (" (quick)" if args.quick else ""))
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    machine = machine_info()
    log(f"machine: {machine['cores']} cores, {machine['memory_mb']:,} MB, {machine['cpu_model']}, "
        f"Python {machine['python']}, PostgreSQL {machine['postgresql']}, load {machine['load_average_at_start']}")
    worker_args = shlex.split(args.worker) if args.worker else procs.procfile_worker_args()
    port = args.port or procs.free_port(range(8200, 8210))
    sandbox_base = f"http://127.0.0.1:{port}/sandbox"
    # Provider apps may call the sandbox only at its own address (connections.providers.endpoints):
    # this process, and the worker and servers it starts, are told where it is.
    os.environ["SANDBOX_BASE_URL"] = sandbox_base
    from django.conf import settings

    settings.SANDBOX_BASE_URL = sandbox_base

    def phase(name: str, work) -> None:
        log(f"{name} ...")
        phase_started = time.perf_counter()
        busy_before = procs.machine_busy_seconds()
        try:
            work()
        except Exception as exc:
            results.errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        seconds = time.perf_counter() - phase_started
        busy = (procs.machine_busy_seconds() - busy_before) / max(seconds, 1e-9)
        results.details.setdefault("phase_seconds", {})[name] = round(seconds, 1)
        # How loaded the machine was: every program's CPU, the benchmark's own included.
        results.details.setdefault("phase_machine", {})[name] = {
            "busy_cores": round(busy, 2), "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        log(f"{name}: {seconds:.0f} s; the machine's cores were {busy:.2f} busy on average, "
            f"load average {os.getloadavg()[0]:.1f}")

    world_holder = {}

    def build() -> None:
        world_holder["world"] = world_build(
            firm_connections=sizes.firm_connections, big_households=sizes.big_households,
            small_households=sizes.small_households, sandbox_url=sandbox_base, log=log,
        )

    phase("world", build)
    world = world_holder.get("world")
    if world is None:
        return _finish(results, machine, args, sizes, started, worker_args, log)

    if "pages" in args.phases:
        from .pages import run_pages

        phase("pages", lambda: run_pages(world, results, requests=sizes.page_requests, log=log))

    if "exports" in args.phases:
        from .exports import run_exports

        phase("exports", lambda: run_exports(world, results, log=log))
    if "api" in args.phases:
        from .api import run_api

        phase("api", lambda: run_api(world, results, connections=sizes.api_connections, rounds=sizes.api_rounds,
                                     log=log))

    if "sweep" in args.phases:
        from .sweep import run_sweep_big, run_sweep_small

        small_holder = {}
        phase("sweep (firm)", lambda: small_holder.update(small=run_sweep_small(results, redis_url=env.redis_url,
                                                                                  log=log)))

        def grow_and_sweep() -> None:
            world_grow(world, total_connections=sizes.total_connections, log=log)
            run_sweep_big(results, redis_url=env.redis_url, small=small_holder.get("small"), log=log)

        phase("sweep (world)", grow_and_sweep)

    if "checks" in args.phases or "storm" in args.phases:
        from .load import SandboxControl, run_checks, run_storm

        sandbox = None
        try:
            concurrency = _concurrency(worker_args)
            sandbox = procs.sandbox_start(port=port, workers=2, threads=max(16, concurrency // 2 + 8))
            control = SandboxControl(sandbox_base)
            control.call("POST", "reset", {})
            log(f"sandbox server on port {port} (pid {sandbox.pid}); worker: celery {' '.join(worker_args)}")
            if "checks" in args.phases:
                phase("checks", lambda: run_checks(
                    results, sandbox_base=sandbox_base, sandbox_pid=sandbox.pid, control=control,
                    worker_args=worker_args, redis_url=env.redis_url, count=sizes.checks,
                    ceiling_calls=sizes.ceiling_calls, log=log))
            if "storm" in args.phases:
                phase("storm", lambda: run_storm(
                    results, sandbox_base=sandbox_base, control=control, worker_args=worker_args,
                    redis_url=env.redis_url, count=sizes.storm_tokens, rate=sizes.storm_rate, log=log))
        except Exception as exc:
            results.errors["sandbox"] = f"{type(exc).__name__}: {exc}"
            log(f"sandbox FAILED: {exc}")
        finally:
            if sandbox is not None:
                sandbox.stop()
    return _finish(results, machine, args, sizes, started, worker_args, log)


def _concurrency(worker_args: list[str]) -> int:
    from .load import worker_concurrency

    return worker_concurrency(worker_args)


def _finish(results, machine, args, sizes, started, worker_args, log) -> int:
    from .results import RESULTS_PATH

    run = {
        "quick": args.quick,
        "phases": args.phases,
        "sizes": sizes.__dict__,
        "worker": "celery " + " ".join(worker_args),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = results.write(machine=machine, run=run, path=Path(args.output).resolve() if args.output else RESULTS_PATH)
    print()
    print(results.table())
    print()
    missed = results.targets_missed
    where = path.relative_to(RESULTS_PATH.parent.parent) if path.is_relative_to(RESULTS_PATH.parent.parent) else path
    log(f"{len(results.figures)} figures, {len(missed)} target(s) missed"
        + (f": {', '.join(f.name for f in missed)}" if missed else "") + f"; written to {where}")
    for name, error in results.errors.items():
        log(f"phase {name} could not run: {error}")
    return 1 if results.errors else 0


def _logger(started: float):
    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    return log


if __name__ == "__main__":
    sys.exit(main())
