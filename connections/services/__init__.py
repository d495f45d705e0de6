"""Writes for the adviser web UI (and the API): keyword-only, typed, ``<noun>_<verb>`` names.

Views validate input and call these. Status transitions are never decided
here: a completed authorization goes through :func:`lifecycle.grant_apply`, a
check through :func:`lifecycle.connection_check`, a disconnect through
:func:`lifecycle.connection_disconnect`, and history through
:func:`lifecycle.event_record`.

Secrets: the ``state`` of an authorization request and the token of a client
link are handed to the browser and never stored (only their SHA-256). A
password typed into a credential form is passed to the provider once and
dropped: it is never stored, logged, put in an event or rendered back.

Limits: what one person may try is limited before any provider is called
(:mod:`connections.attempts`): credential attempts per client link, address
and user, "Check now" and client-link sends per user. A limit reached raises
:class:`Throttled` (or :class:`ClientLinkLocked` for a link that is spent).

Modules: ``authorizations`` (redirect flows and their callbacks),
``credentials`` (credential forms), ``checks`` (check now, disconnect),
``client_links``, ``reconnect_requests`` (household requests: who is
asked about what, creating them, reading back what happened),
``reconnect_client`` (the client's link, opening, stopping), ``reconnect_followup`` (reminders, delivery reports, bulk
sends); ``common`` holds what they share.
"""

from .authorizations import (
    CALLBACK_HTTP_STATUS,
    AuthorizationResult,
    AuthorizationStarted,
    CallbackOutcome,
    authorization_complete,
    authorization_start,
)
from .checks import CheckNow, connection_check_now, connection_disconnect_now, connections_check_enqueue
from .client_links import (
    ClientLinkCreated,
    ClientLinkError,
    ClientLinkLocked,
    client_link_complete,
    client_link_create,
    client_link_expire,
    client_link_is_reconnect,
    client_link_open,
    client_link_resolve,
)
from .common import AUTHORIZATION_REQUEST_TTL, CLIENT_LINK_ACTOR, CLIENT_LINK_SALT, Throttled, source_words
from .credentials import CredentialsRejected, ReconnectMismatch, credentials_connect
from .reconnect_client import reconnect_request_open, reconnect_request_resolve, reconnect_request_stop
from .reconnect_followup import (
    reconnect_bulk_process,
    reconnect_bulk_start,
    reconnect_bulks_resume,
    reconnect_reminders_send,
    reconnect_request_delivery_record,
)
from .reconnect_requests import (
    ReconnectRequestError,
    ReconnectRequestResult,
    RequestPlan,
    reconnect_request_plans,
    reconnect_request_preview,
    reconnect_requests_create,
)
from .reconnect_sync import reconnect_requests_sync

__all__ = [
    "AUTHORIZATION_REQUEST_TTL",
    "CALLBACK_HTTP_STATUS",
    "CLIENT_LINK_ACTOR",
    "CLIENT_LINK_SALT",
    "AuthorizationResult",
    "AuthorizationStarted",
    "CallbackOutcome",
    "CheckNow",
    "ClientLinkCreated",
    "ClientLinkError",
    "ClientLinkLocked",
    "CredentialsRejected",
    "ReconnectMismatch",
    "ReconnectRequestError",
    "ReconnectRequestResult",
    "RequestPlan",
    "Throttled",
    "authorization_complete",
    "authorization_start",
    "client_link_complete",
    "client_link_create",
    "client_link_expire",
    "client_link_is_reconnect",
    "client_link_open",
    "client_link_resolve",
    "connection_check_now",
    "connection_disconnect_now",
    "connections_check_enqueue",
    "credentials_connect",
    "reconnect_bulk_process",
    "reconnect_bulk_start",
    "reconnect_bulks_resume",
    "reconnect_reminders_send",
    "reconnect_request_delivery_record",
    "reconnect_request_open",
    "reconnect_request_plans",
    "reconnect_request_preview",
    "reconnect_request_resolve",
    "reconnect_request_stop",
    "reconnect_requests_create",
    "reconnect_requests_sync",
    "source_words",
]
