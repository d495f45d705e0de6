"""Reads that reveal client data, on the audit trail: once per reader, object and window, for one INSERT.

Recorded (``AuditEntry.Action.VIEWED``), for a reply that showed the data (a GET answered 200):

- a household's page and a connection's page, by the signed-in user;
- the API's reads of one household, client or connection (its events and
  accounts too), and its lists (households, clients, connections, the event
  feed), by the API key.

A PDF report and every export are already recorded as exports, each time.
The dashboard and the firm's report pages show counts and statuses, not a
client's data, and are not recorded. A reader who got a 404 (another firm's
object, or one outside their households) saw nothing, so nothing is
recorded for them.

Each read is one ``INSERT ... ON CONFLICT DO NOTHING`` keyed on (reader,
object, window): the page or reply already loaded what it shows, so the row
is made from the request's own ids (the user's membership is cached on the
request's user; the key is the request's ``auth``) with no query of its own,
and a reader who reloads a page twenty times in a window is one row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.urls import ResolverMatch
from django.utils import timezone

from connections import selectors, wording
from connections.logging import redact

from .audit import client_address, request_user
from .models import AuditEntry

# url name -> (what is read, the URL keyword naming it, whether it is a household)
PAGES: dict[str, tuple[str, str, bool]] = {
    "household_detail": ("household", "pk", True),
    "connection_detail": ("connection", "pk", False),
}
API_NAMESPACE = "api-v1"
API_READS: dict[str, tuple[str, str, bool]] = {
    "get_household": ("household", "household_id", True),
    "get_client": ("client", "client_id", False),
    "get_connection": ("connection", "connection_id", False),
    "list_connection_events": ("connection's events", "connection_id", False),
    "list_connection_accounts": ("connection's accounts and balances", "connection_id", False),
    "list_households": ("household list", "", False),
    "list_clients": ("client list", "", False),
    "list_connections": ("connection list", "", False),
    "list_events": ("event feed", "", False),
}


def read_window() -> dt.timedelta:
    return dt.timedelta(minutes=float(getattr(settings, "AUDIT_READ_WINDOW_MINUTES", 15)))


def _watched(match: ResolverMatch) -> tuple[str, str, bool] | None:
    if API_NAMESPACE in match.namespaces:
        return API_READS.get(match.url_name or "")
    if match.namespaces:
        return None
    return PAGES.get(match.url_name or "")


def seen_key(*, reader: str, object_type: str, object_id: str, at: dt.datetime) -> str:
    """The read's key: the same for every read of one object by one reader within one window."""
    window = int(at.timestamp() // read_window().total_seconds())
    return hashlib.sha256(f"{reader}|{object_type}|{object_id}|{window}".encode()).hexdigest()


def read_record(request: HttpRequest, response: HttpResponseBase, *, now: dt.datetime | None = None) -> bool:
    """Put the read ``request`` made on the trail, when it revealed client data. True when it was a watched read.

    (True does not say a row was added: a read seen again in its window adds none.)
    """
    match = getattr(request, "resolver_match", None)
    if request.method != "GET" or response.status_code != 200 or match is None:
        return False
    watched = _watched(match)
    if watched is None:
        return False
    object_type, keyword, is_household = watched
    object_id = str(match.kwargs.get(keyword, "")) if keyword else ""
    fields: dict[str, Any]
    if API_NAMESPACE in match.namespaces:
        api_key = getattr(request, "auth", None)
        if api_key is None:
            return False
        reader = f"api-key:{api_key.pk}"
        fields = {"firm_id": api_key.firm_id, "actor_name": wording.api_actor(key_prefix=api_key.prefix)}
        via = "through the API"
    else:
        user = request_user(request)
        membership = selectors.membership_for(user=user) if user is not None else None
        if user is None or membership is None:
            return False
        reader = f"user:{user.pk}"
        fields = {"firm_id": membership.firm_id, "actor": user, "actor_name": wording.person_name(user)[:200]}
        via = "in the portal"
    now = now or timezone.now()
    what = f"{object_type} {object_id}".strip()
    AuditEntry.objects.bulk_create(
        [
            AuditEntry(
                at=now,
                ip_address=client_address(request),
                action=AuditEntry.Action.VIEWED,
                household_id=int(object_id) if is_household and object_id.isdigit() else None,
                object_type=object_type,
                object_id=object_id,
                message=redact(f"{fields['actor_name']} viewed the {what} {via}.")[:500],
                details={"path": match.route, "window_minutes": read_window().total_seconds() / 60},
                seen_key=seen_key(reader=reader, object_type=object_type, object_id=object_id, at=now),
                **fields,
            )
        ],
        ignore_conflicts=True,
    )
    return True
