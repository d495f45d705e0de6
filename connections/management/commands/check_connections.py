"""Check connections now, in this process, through the same code path as the ``check_connection`` task.

Without ``--all`` only connections that are due are checked (what the next
sweep would pick up). ``--all`` checks every active, degraded or
needs-reconnect connection in scope right away. ``--provider`` and
``--household`` narrow the scope. A progress bar shows on stderr and a
summary table of outcomes on stdout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.db import connection as db_connection
from django.utils import timezone
from tqdm import tqdm

from connections import lifecycle
from connections.lifecycle import CheckResult, Outcome
from connections.models import Connection, Provider, Status

SUMMARY_ROWS = ("active", "degraded", "needs_reconnect", "deferred", "skipped", "errors")


def summary_key(result: CheckResult) -> str:
    """Which summary row a result counts in: its status after the check, or what prevented one."""
    if result.outcome == Outcome.ERROR:
        return "errors"
    if result.outcome == Outcome.DEFERRED:
        return "deferred"
    if result.outcome == Outcome.SKIPPED:
        return "skipped"
    return result.status if result.status in SUMMARY_ROWS else "skipped"


class Command(BaseCommand):
    help = "Check connections now (renew when due, probe, apply the outcome) with a progress bar and a summary."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--provider", choices=[p.value for p in Provider], help="Only this provider.")
        parser.add_argument("--household", type=int, help="Only this household (id).")
        parser.add_argument(
            "--all",
            action="store_true",
            help="Check every active, degraded or needs-reconnect connection in scope, due or not.",
        )
        parser.add_argument("--workers", type=int, default=1, help="Checks to run in parallel (threads).")

    def handle(self, *args: Any, **options: Any) -> None:
        force: bool = options["all"]
        now = timezone.now()
        if force:
            queryset = Connection.objects.filter(status__in=sorted(lifecycle.rules.CHECKABLE))
        else:
            queryset = lifecycle.due_queryset(now=now)
        if options["provider"]:
            queryset = queryset.filter(provider=options["provider"])
        if options["household"] is not None:
            queryset = queryset.filter(household_id=options["household"])
        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        workers = max(1, int(options["workers"]))
        if workers > 1 and db_connection.vendor == "sqlite":
            raise CommandError("--workers above 1 needs PostgreSQL; SQLite allows one writer at a time.")

        def run(connection_id: int) -> CheckResult:
            try:
                return lifecycle.connection_check(
                    connection_id=connection_id, actor_label="command:check_connections", force=force
                )
            finally:
                if workers > 1:
                    close_old_connections()

        counts: Counter[str] = Counter()
        renewed = 0
        transient = 0
        # tqdm redraws with carriage returns: give it the raw stream, not the
        # OutputWrapper, which would append a newline to every redraw.
        stream = self.stderr._out  # noqa: SLF001 - the stream Django's OutputWrapper wraps
        with tqdm(total=len(ids), desc="Checking", unit="conn", file=stream, leave=True) as bar:
            results: Iterator[CheckResult]
            if workers == 1:
                results = map(run, ids)
            else:
                pool = ThreadPoolExecutor(max_workers=workers)
                results = pool.map(run, ids)
            for result in results:
                counts[summary_key(result)] += 1
                renewed += int(result.renewed)
                transient += int(result.outcome == Outcome.TRANSIENT)
                bar.update(1)
            if workers > 1:
                pool.shutdown()

        width = max(len(row) for row in SUMMARY_ROWS)
        self.stdout.write(f"{'outcome'.ljust(width)}  count")
        self.stdout.write(f"{'-' * width}  -----")
        for row in SUMMARY_ROWS:
            self.stdout.write(f"{row.ljust(width)}  {counts.get(row, 0):5d}")
        self.stdout.write(f"{'-' * width}  -----")
        self.stdout.write(f"{'checked'.ljust(width)}  {len(ids):5d}")
        self.stdout.write(f"{'renewed'.ljust(width)}  {renewed:5d}")
        self.stdout.write(f"{'transient'.ljust(width)}  {transient:5d}  (temporary failures, retried with backoff)")
        if counts.get(Status.NEEDS_RECONNECT):
            self.stdout.write(
                self.style.WARNING(f"{counts[Status.NEEDS_RECONNECT]} connection(s) need the client to reconnect.")
            )
