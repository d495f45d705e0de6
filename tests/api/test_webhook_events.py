"""Which connection events a firm hears about, as a table (no database): the mapping in api/webhooks/events.py."""

from __future__ import annotations

import pytest

from api.webhooks.events import REPORTED_KINDS, webhook_type_for

NR, DEG, ACT, PEN, DIS = "needs_reconnect", "degraded", "active", "pending", "disconnected"

TABLE = [
    # kind, from, to -> type
    ("check_failed", ACT, NR, "connection.needs_reconnect"),
    ("check_failed", DEG, NR, "connection.needs_reconnect"),
    ("status_changed", ACT, NR, "connection.needs_reconnect"),  # a hard deadline passed; credentials unreadable
    ("check_failed", ACT, DEG, "connection.degraded"),
    ("recovered", DEG, ACT, "connection.recovered"),
    ("recovered", NR, ACT, "connection.recovered"),
    ("disconnected", ACT, DIS, "connection.disconnected"),
    ("disconnected", PEN, DIS, "connection.disconnected"),
    ("deadline_warning", ACT, ACT, "connection.deadline_approaching"),
    ("link_sent", "", "", "client_link.sent"),
    ("link_opened", "", "", "client_link.opened"),
    ("link_completed", "", "", "client_link.completed"),
    ("link_expired", "", "", "client_link.expired"),
    # History only: what the rules did not report as a change.
    ("check_failed", ACT, ACT, None),  # a transient failure below the degraded threshold
    ("check_failed", DEG, DEG, None),
    ("check_failed", NR, NR, None),  # a forced check of a flagged connection
    ("status_changed", PEN, PEN, None),  # an authorization abandoned
    ("connected", PEN, ACT, None),
    ("reconnected", NR, ACT, None),  # its RECOVERED event is the one reported
    ("renewed", ACT, ACT, None),
    ("check_succeeded", ACT, ACT, None),
    ("created", "", PEN, None),
    ("reconnect_refused", NR, NR, None),
]


@pytest.mark.parametrize(("kind", "from_status", "to_status", "expected"), TABLE)
def test_each_connection_event_maps_to_its_webhook_type_or_to_nothing(
    kind: str, from_status: str, to_status: str, expected: str | None
) -> None:
    assert webhook_type_for(kind=kind, from_status=from_status, to_status=to_status) == expected


def test_the_dispatcher_reads_every_kind_that_can_map() -> None:
    mapped = {kind for kind, f, t, expected in TABLE if expected}
    assert mapped <= REPORTED_KINDS
