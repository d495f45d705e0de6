"""Celery application for the portal's background jobs.

JSON only (tasks carry ids, never pickled objects or secrets), late
acknowledgement so a task whose worker dies is redelivered, and
django-celery-beat's database scheduler so schedules are editable in admin.

The worker runs the threads pool (Procfile), which does not enforce task time
limits; the limits below still bind a prefork worker. What keeps a stuck
provider from holding a thread is the provider call's own total deadline
(``connections.providers.http``), well inside a check's lease.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    task_ignore_result=True,
    task_soft_time_limit=60,
    task_time_limit=90,
    # Acknowledge after the task ran, and requeue when the worker process is
    # killed: a renewal interrupted by SIGKILL is redelivered. Tasks are
    # written to be idempotent for exactly this reason.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Each message is a chunk of checks that mostly wait on the network; four
    # in hand per thread keep 32 threads busy (chosen by `make bench`, "checks").
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    timezone="UTC",
)
app.autodiscover_tasks()
