"""Celery tasks of firm oversight, each run at most once per slot (``connections.jobs.periodic_job``).

* ``reports.freshness_snapshot`` (hourly): today's freshness figures per firm and adviser;
  the last run of a day is the day's reading.
* ``reports.oversight_tally`` (every 5 minutes): provider health per day, and the audit
  trail's catch-up from the connection outbox.
"""

from __future__ import annotations

from celery import shared_task

from connections.jobs import periodic_job

from . import jobs

SNAPSHOT_SLOT_SECONDS = 3600


@shared_task(name="reports.freshness_snapshot", ignore_result=True)
def freshness_snapshot() -> int:
    with periodic_job("reports_freshness_snapshot", slot_seconds=SNAPSHOT_SLOT_SECONDS) as mine:
        if not mine:
            return 0
        return jobs.freshness_snapshot_take()


@shared_task(name="reports.oversight_tally", ignore_result=True)
def oversight_tally() -> dict[str, int]:
    with periodic_job("reports_oversight_tally", slot_seconds=jobs.TALLY_SLOT_SECONDS) as mine:
        if not mine:
            return {}
        return jobs.oversight_tally()
