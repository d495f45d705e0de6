"""Which connection events a firm hears about, as which webhook type. PURE: no ORM, no clock.

The lifecycle's rules decide every transition and write it as a
ConnectionEvent in the same transaction; this mapping only names the ones
worth telling another system, so a webhook is never sent for something the
rules did not report: a transient failure that leaves a connection active
(a flap below the degraded threshold) is a ``check_failed`` event from active
to active, and maps to nothing; so does a forced check of a connection that
was already flagged (needs_reconnect to needs_reconnect).
"""

from __future__ import annotations

from connections.models import ConnectionEvent, Status

from ..models import EventType

Kind = ConnectionEvent.Kind

# Kinds that can map to a type; the dispatcher reads only these.
REPORTED_KINDS: frozenset[str] = frozenset(
    {
        Kind.CHECK_FAILED,
        Kind.STATUS_CHANGED,
        Kind.RECOVERED,
        Kind.DISCONNECTED,
        Kind.DEADLINE_WARNING,
        Kind.LINK_SENT,
        Kind.LINK_OPENED,
        Kind.LINK_COMPLETED,
        Kind.LINK_EXPIRED,
    }
)

_BY_KIND: dict[str, EventType] = {
    Kind.RECOVERED: EventType.CONNECTION_RECOVERED,
    Kind.DISCONNECTED: EventType.CONNECTION_DISCONNECTED,
    Kind.DEADLINE_WARNING: EventType.CONNECTION_DEADLINE_APPROACHING,
    Kind.LINK_SENT: EventType.CLIENT_LINK_SENT,
    Kind.LINK_OPENED: EventType.CLIENT_LINK_OPENED,
    Kind.LINK_COMPLETED: EventType.CLIENT_LINK_COMPLETED,
    Kind.LINK_EXPIRED: EventType.CLIENT_LINK_EXPIRED,
}

# A status a connection moved into that another system acts on.
_ENTERED: dict[str, EventType] = {
    Status.NEEDS_RECONNECT: EventType.CONNECTION_NEEDS_RECONNECT,
    Status.DEGRADED: EventType.CONNECTION_DEGRADED,
}


def webhook_type_for(*, kind: str, from_status: str, to_status: str) -> EventType | None:
    """The webhook type of a connection event, or ``None`` when it is history only."""
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if kind in (Kind.CHECK_FAILED, Kind.STATUS_CHANGED) and to_status != from_status:
        return _ENTERED.get(to_status)
    return None


CLIENT_LINK_TYPES: frozenset[str] = frozenset(
    {
        EventType.CLIENT_LINK_SENT,
        EventType.CLIENT_LINK_OPENED,
        EventType.CLIENT_LINK_COMPLETED,
        EventType.CLIENT_LINK_EXPIRED,
    }
)
