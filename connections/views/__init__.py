"""Views of the adviser web UI: thin, they validate input and call services or selectors.

Every object an adviser can address is fetched through a scoped queryset from
:mod:`connections.selectors` (``get_object_or_404`` on it), so an id outside
the user's households is a 404, never someone else's data.
"""

from .account import PasswordResetView
from .actions import connection_check, connection_disconnect, connection_reconnect
from .connect import CALLBACK_TITLES, connect_callback, household_connect, household_connect_credentials
from .links import client_link, connection_link_send, household_link_new
from .pages import attention_list, connection_detail, connection_list, dashboard, household_detail

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
    "connection_reconnect",
    "dashboard",
    "household_connect",
    "household_connect_credentials",
    "household_detail",
    "household_link_new",
]
