"""The periodic-job slot lock: each periodic job runs at most once per time slot, whoever starts it.

Settings: ``PERIODIC_JOB_SLOTS`` ({job: seconds}) overrides :data:`JOB_SLOT_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import PeriodicJobRun

logger = logging.getLogger("connections.jobs")

# How long one slot of each periodic job lasts: a job runs at most once per
# slot, whoever starts it. Keep each no longer than the job's schedule.
JOB_SLOT_SECONDS: dict[str, int] = {
    "sweep": 60,
    "housekeeping": 300,
    "refresh_app_tokens": 300,
    "send_digests": 3600,
    "send_reminders": 900,
}


def job_slot_seconds(job: str) -> int:
    overrides = getattr(settings, "PERIODIC_JOB_SLOTS", {}) or {}
    return int(overrides.get(job, JOB_SLOT_SECONDS.get(job, 60)))


def job_slot_start(job: str, now: datetime, *, slot_seconds: int | None = None) -> datetime:
    """The start of the slot ``now`` falls in: slots are aligned on the epoch."""
    seconds = slot_seconds or job_slot_seconds(job)
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo or timezone.get_current_timezone())


@contextmanager
def periodic_job(job: str, *, now: datetime | None = None, slot_seconds: int | None = None) -> Iterator[bool]:
    """Yield True to the one caller that claims ``job``'s current slot, False to any other.

    ``slot_seconds`` is for jobs of other apps, whose slots this module does not list.

    The claim is an INSERT of (job, slot_start) under a unique constraint, in
    its own transaction: two beats, or a beat and a person running the task by
    hand, never do one slot's work twice, on SQLite and PostgreSQL alike.
    """
    now = now or timezone.now()
    slot = job_slot_start(job, now, slot_seconds=slot_seconds)
    owner = f"{socket.gethostname()[:40]}:{os.getpid()}"
    try:
        with transaction.atomic():
            run = PeriodicJobRun.objects.create(job=job, slot_start=slot, owner=owner, started_at=now)
    except IntegrityError:
        logger.info("Periodic job %s: slot %s already taken; skipping.", job, slot.isoformat())
        yield False
        return
    try:
        yield True
    finally:
        PeriodicJobRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
