"""Celery tasks: thin wrappers over :mod:`connections.jobs` and :mod:`connections.lifecycle`.

Tasks take ids, never secrets, and are enqueued on commit. Each periodic task
runs at most once per time slot (:func:`connections.jobs.periodic_job`), even
if two beats were ever started by mistake.

Task names (for django-celery-beat and ``celery call``):

* ``connections.sweep`` (every minute): claim due connections and enqueue their
  checks, in chunks of ids (``connections.check_connections``);
* ``connections.check_connections(connection_ids)``: check each in turn;
* ``connections.check_connection(connection_id)``: renew when due, probe, apply
  (for one connection, e.g. a "check now" button);
* ``connections.send_digests`` (hourly): one email per adviser with news;
* ``connections.housekeeping`` (every 5 minutes): expire stale authorization
  requests and client links, record deadline warnings;
* ``connections.refresh_app_tokens`` (every 5 minutes): keep app tokens fresh;
* ``connections.send_reminders`` (every 15 minutes): keep problems current,
  follow up reconnect requests and remind clients, resume throttled bulk sends;
* ``connections.send_reconnect_requests(bulk_id)``: a bulk "ask the clients to
  reconnect", within the firm's hourly limit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from . import jobs, lifecycle, services, wording

logger = logging.getLogger("connections.tasks")


def chunk_shape() -> tuple[int, int]:
    """(``LIFECYCLE_CHECK_CHUNK_SIZE``, ``LIFECYCLE_CHECK_MIN_MESSAGES``): the most ids one
    worker thread checks in a row (25), and how many messages a due set is spread over at least (16)."""
    most = max(1, int(getattr(settings, "LIFECYCLE_CHECK_CHUNK_SIZE", 25)))
    spread = max(1, int(getattr(settings, "LIFECYCLE_CHECK_MIN_MESSAGES", 16)))
    return most, spread


def check_chunks(connection_ids: Sequence[int]) -> list[list[int]]:
    """Split ids into messages: at most ``LIFECYCLE_CHECK_CHUNK_SIZE`` (25) each, and spread
    over at least ``LIFECYCLE_CHECK_MIN_MESSAGES`` (16) messages when there are that many ids,
    so a small due set still runs in parallel across worker threads."""
    most, spread = chunk_shape()
    size = max(1, min(most, math.ceil(len(connection_ids) / spread)))
    ids = list(connection_ids)
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def sweep_messages(connection_ids: Sequence[int]) -> list[list[int]]:
    """What the sweep publishes for a batch of claimed ids.

    Up to ``LIFECYCLE_CHECK_CHUNK_SIZE * LIFECYCLE_CHECK_MIN_MESSAGES`` ids
    (400) go out as :func:`check_chunks` would split them. A larger batch goes
    as messages of that many ids, each fanned out into chunks by the worker
    that takes it (:func:`check_connections`): the sweep then pays one broker
    round trip per 400 ids instead of one per 25, and the publishing of the
    chunks is spread over the workers.
    """
    most, spread = chunk_shape()
    fan_out = most * spread
    ids = list(connection_ids)
    if len(ids) <= fan_out:
        return check_chunks(ids)
    return [ids[i : i + fan_out] for i in range(0, len(ids), fan_out)]


def ids_summary(ids: Sequence[int]) -> str:
    """What a check message's ids look like in logs and monitoring: how many, and the first and last."""
    if not ids:
        return "([],)"
    return f"([{len(ids)} ids: {ids[0]}..{ids[-1]}],)"


def messages_publish(messages: list[list[int]]) -> None:
    """One ``connections.check_connections`` message per list of ids, over one producer.

    Each message names its ids in a short summary (``argsrepr``): left to
    itself, Celery writes a ``saferepr`` of every argument into the message's
    headers, and for 400 ids that walk cost as much as the publish itself
    (``make bench``, "sweep").
    """
    app = check_connections.app
    if app.conf.task_always_eager:
        for ids in messages:
            check_connections.apply_async((ids,))
        return
    with app.producer_or_acquire() as producer:
        for ids in messages:
            # ``argsrepr``/``kwargsrepr`` are documented apply_async options the stubs do not list.
            check_connections.apply_async(  # type: ignore[call-arg]
                (ids,), producer=producer, argsrepr=ids_summary(ids), kwargsrepr="{}"
            )


def checks_publish(connection_ids: Sequence[int]) -> None:
    """Enqueue checks for ``connection_ids`` over one producer (one broker connection for the batch).

    Ids travel in chunks (``connections.check_connections``, see
    :func:`sweep_messages`): a broker round trip per connection would cap the
    sweep at about a thousand connections a second, while the chunks keep the
    work spread over every worker thread. Each check in a chunk claims, runs
    and fails on its own. A publish failure is logged, not raised: the sweep's
    claim runs out after ``LIFECYCLE_SWEEP_LEASE_SECONDS`` and those
    connections are claimed again.
    """
    if not connection_ids:
        return
    try:
        messages_publish(sweep_messages(connection_ids))
    except Exception:
        logger.exception(
            "Could not enqueue %s check(s); they will be claimed again when the sweep's claim runs out.",
            len(connection_ids),
        )


@shared_task(name="connections.sweep", ignore_result=True)
def sweep() -> int:
    """Claim due connections in batches and enqueue their checks. Returns how many were claimed."""
    with jobs.periodic_job("sweep") as mine:
        if not mine:
            return 0
        return jobs.sweep_run(publish=checks_publish)


@shared_task(name="connections.check_connection", ignore_result=True)
def check_connection(
    connection_id: int, force: bool = False, actor_id: int | None = None, actor_label: str = ""
) -> str:
    """Check one connection (see :func:`lifecycle.connection_check`). Returns the outcome's name.

    ``force=True`` checks it even when it is not due or needs reconnecting
    (someone asked: ``actor_id`` is who, ``actor_label`` through what); it
    still never runs alongside another check of it.
    """
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id is not None else None
    return lifecycle.connection_check(
        connection_id=int(connection_id),
        actor=actor,
        actor_label=actor_label or ("" if actor is not None else wording.SCHEDULED_CHECK),
        force=bool(force),
    ).outcome


@shared_task(name="connections.check_connections", ignore_result=True)
def check_connections(connection_ids: list[int]) -> dict[str, int]:
    """Check a chunk of connections (:func:`lifecycle.connections_check`). Returns a count per outcome.

    A message of more ids than ``LIFECYCLE_CHECK_CHUNK_SIZE`` (the sweep's
    large messages, see :func:`sweep_messages`) is fanned out first: every
    chunk but the first is published for other worker threads, and this one
    checks the first. A failure to publish is logged; those connections'
    sweep claims run out and they are claimed again, as when the sweep's own
    publish fails.
    """
    most, _spread = chunk_shape()
    ids = list(connection_ids)
    # Chunks of exactly ``most``: a chunk the sweep already made small is never split again.
    chunks = [ids[i : i + most] for i in range(0, len(ids), most)]
    if len(chunks) > 1:
        try:
            messages_publish(chunks[1:])
        except Exception:
            logger.exception(
                "Could not fan out %s check(s); they will be claimed again when the sweep's claim runs out.",
                sum(len(chunk) for chunk in chunks[1:]),
            )
    counts: dict[str, int] = {}
    for result in lifecycle.connections_check(connection_ids=chunks[0]) if chunks else []:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts


@shared_task(name="connections.send_digests", ignore_result=True)
def send_digests() -> int:
    with jobs.periodic_job("send_digests") as mine:
        if not mine:
            return 0
        return jobs.digests_send()


@shared_task(name="connections.housekeeping", ignore_result=True)
def housekeeping() -> dict[str, int]:
    with jobs.periodic_job("housekeeping") as mine:
        if not mine:
            return {}
        return jobs.housekeeping_run()


@shared_task(name="connections.refresh_app_tokens", ignore_result=True)
def refresh_app_tokens() -> dict[str, str]:
    with jobs.periodic_job("refresh_app_tokens") as mine:
        if not mine:
            return {}
        return jobs.app_tokens_refresh()


@shared_task(name="connections.send_reminders", ignore_result=True)
def send_reminders() -> dict[str, int]:
    with jobs.periodic_job("send_reminders") as mine:
        if not mine:
            return {}
        return jobs.reminders_run()


@shared_task(name="connections.send_reconnect_requests", ignore_result=True)
def send_reconnect_requests(bulk_id: str) -> int:
    """Send a bulk request's next households, as far as the firm's hourly limit allows. Returns how many sent."""
    bulk = services.reconnect_bulk_process(bulk_id=str(bulk_id))
    return bulk.sent if bulk is not None else 0
