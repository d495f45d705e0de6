"""Rows the portal keeps for its own running: attempt windows of the limits, periodic job runs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AttemptWindow(models.Model):
    """The recent attempts of one subject under one limit: the database store of :mod:`connections.attempts`.

    ``key`` is a keyed hash of the limit's name and the subject (a user id, a
    client address, an email address), so addresses and emails are not kept
    here in clear. ``hits`` holds ``[time, id]`` pairs still inside the window,
    oldest first. ``expires_at`` is when the newest hit leaves the window:
    after it the row says nothing and may be deleted.
    """

    key = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=40)
    hits = models.JSONField(default=list)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.name}: {len(self.hits)} recent attempts"


class PeriodicJobRun(models.Model):
    """One run of a periodic job in one time slot.

    The row is the lock: a job inserts (job, slot_start) before doing any work,
    and the unique constraint makes a second insert for the same slot fail, so
    two beats (or a beat and a manual run) never do one slot's work twice.
    """

    job = models.CharField(max_length=50)
    slot_start = models.DateTimeField()
    owner = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-slot_start"]
        constraints = [
            models.UniqueConstraint(fields=["job", "slot_start"], name="periodicjobrun_unique_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.job} at {self.slot_start:%Y-%m-%d %H:%M:%S}"
