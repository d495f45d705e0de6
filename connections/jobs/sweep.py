"""The sweep: claim due connections in batches and hand their ids on to be checked.

Settings: ``LIFECYCLE_SWEEP_BATCH_SIZE`` (1000) and ``LIFECYCLE_SWEEP_MAX_PER_RUN``
(100000): how many due connections one sweep claims per transaction and in all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import lifecycle

logger = logging.getLogger("connections.jobs")


def sweep_run(*, publish: Callable[[list[int]], None], now: datetime | None = None) -> int:
    """Claim due connections in batches and hand each batch's ids to ``publish`` once committed.

    Returns how many were claimed. Each batch is one short transaction (claim
    by condition, see :func:`lifecycle.connections_claim_due`); ``publish``
    runs on commit, so a worker never sees an id whose claim might roll back.
    """
    batch = int(getattr(settings, "LIFECYCLE_SWEEP_BATCH_SIZE", 1000))
    limit = int(getattr(settings, "LIFECYCLE_SWEEP_MAX_PER_RUN", 100_000))
    owner = f"{lifecycle.SWEEP_OWNER_PREFIX}{uuid.uuid4().hex[:16]}"
    claimed = 0
    while claimed < limit:
        with transaction.atomic():
            ids = lifecycle.connections_claim_due(
                now=now or timezone.now(), limit=min(batch, limit - claimed), owner=owner
            )
            if ids:
                transaction.on_commit(lambda ids=ids: publish(ids))  # type: ignore[misc]
        claimed += len(ids)
        if len(ids) < batch:
            break
    if claimed:
        logger.info("Sweep %s claimed %s due connection(s).", owner, claimed)
    return claimed
