"""Celery application for the portal's background jobs.

JSON only (tasks carry ids, never pickled objects or secrets), hard and soft
time limits so one stuck provider call cannot hold a worker forever, late
acknowledgement so a task whose worker dies is redelivered, and
django-celery-beat's database scheduler so schedules are editable in admin.
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
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    timezone="UTC",
)
app.autodiscover_tasks()
