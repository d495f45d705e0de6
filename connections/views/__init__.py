"""Views of the adviser web UI: thin, they validate input and call services or selectors.

Every object an adviser can address is fetched through a scoped queryset from
:mod:`connections.selectors` (``get_object_or_404`` on it), so an id outside
the user's households is a 404, never someone else's data.
"""

from .account import PasswordResetView
from .actions import connection_check, connection_disconnect, connection_reconnect
from .client_request import (
    reconnect_request_item,
    reconnect_request_open,
    reconnect_request_page,
    reconnect_request_stop,
)
from .connect import CALLBACK_TITLES, connect_callback, household_connect, household_connect_credentials
from .links import client_link, connection_link_send, household_link_new
from .pages import attention_list, connection_detail, connection_list, dashboard, household_detail
from .reconnect import (
    connection_quiet,
    household_reconnect_request,
    notification_settings,
    reconnect_bulk,
    reconnect_requests_ask,
)

__all__ = [
    "CALLBACK_TITLES",
    "PasswordResetView",
    "attention_list",
    "client_link",
    "connect_callback",
    "connection_check",
    "connection_detail",
    "connection_disconnect",
    "connection_link_send",
    "connection_list",
    "connection_quiet",
    "connection_reconnect",
    "dashboard",
    "household_connect",
    "household_connect_credentials",
    "household_detail",
    "household_link_new",
    "household_reconnect_request",
    "notification_settings",
    "reconnect_bulk",
    "reconnect_request_item",
    "reconnect_request_open",
    "reconnect_request_page",
    "reconnect_request_stop",
    "reconnect_requests_ask",
]
