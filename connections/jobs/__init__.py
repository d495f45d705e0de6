"""The periodic jobs' work: thin loops that call the lifecycle and notifications.

:mod:`connections.tasks` wraps each in a Celery task and a :func:`periodic_job`
slot lock; they are plain functions so commands and tests call them directly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from .. import notifications, problems
from .app_tokens import APP_TOKEN_SLACK_SECONDS, app_tokens_refresh
from .housekeeping import (
    authorization_requests_expire,
    client_links_expire,
    deadline_warnings_record,
    deadlines_passed_flag,
    housekeeping_run,
)
from .locks import JOB_SLOT_SECONDS, job_slot_seconds, job_slot_start, periodic_job
from .reminders import reminders_run
from .sweep import sweep_run


def digests_send(*, now: datetime | None = None) -> int:
    """Record deadline warnings that are due, bring the problems up to date, then send the digests
    (:func:`notifications.digests_send`).

    Usually housekeeping has recorded the warnings already; those recorded
    here are dated now and so go out with the next digest (its settle time).
    """
    deadline_warnings_record(now=now)
    # As of the digest's settle moment, so what this run announces falls inside its own window.
    settled = (now or timezone.now()) - timedelta(seconds=notifications.DIGEST_SETTLE_SECONDS)
    problems.problems_update(now=settled)
    return notifications.digests_send(now=now)


__all__ = [
    "APP_TOKEN_SLACK_SECONDS",
    "JOB_SLOT_SECONDS",
    "app_tokens_refresh",
    "authorization_requests_expire",
    "client_links_expire",
    "deadline_warnings_record",
    "deadlines_passed_flag",
    "digests_send",
    "housekeeping_run",
    "job_slot_seconds",
    "job_slot_start",
    "periodic_job",
    "reminders_run",
    "sweep_run",
]
