"""The ``send_reminders`` job: follow up reconnect requests and keep the problem rows current.

Each run, in order: bring the problems in line with the connections and their
committed events (:func:`problems.problems_update`); close requests whose
connections recovered and remind clients whose request is still unfinished
(:func:`services.reconnect_reminders_send`); carry on bulk sends whose hourly
wait is over (:func:`services.reconnect_bulks_resume`).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from .. import problems
from ..services import reconnect_followup


def reminders_run(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    updated = problems.problems_update(now=now)
    return {
        "problems_opened": updated.opened,
        "problems_announced": updated.announced,
        "problems_recovered": updated.recovered,
        "problems_escalated": updated.escalated,
        "reminders_sent": reconnect_followup.reconnect_reminders_send(now=now),
        "bulk_sends_resumed": reconnect_followup.reconnect_bulks_resume(now=now),
    }
