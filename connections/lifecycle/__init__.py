"""The connection lifecycle: connect, check, renew, flag, recover, disconnect.

The public contract (everything else in the package is its inside):

* :func:`connection_check` (``check.py``): claim, renew when due, probe, apply
  the rules, store; returns a :class:`CheckResult` whose ``outcome`` is an
  :class:`Outcome` value. Never raises for a provider problem.
* :func:`grant_apply`, :func:`connection_start`, :func:`connection_disconnect`,
  :func:`connections_abandon` (``grants.py``): what people start. A reconnect
  to a different source account raises :class:`ReconnectMismatch`; a grant for
  a disconnected connection raises :class:`GrantRefused`.
* :func:`connections_claim_due`, :func:`due_queryset` (``claims.py``): the
  sweep's side of claiming.
* :func:`app_credentials_rejected` / :func:`app_credentials_accepted`
  (``provider_apps.py``): the portal's own standing with a provider.
* :func:`client_for_app`, :func:`client_class_for`, :func:`connection_state`,
  :func:`app_config`, :func:`household_grouping` (``clients.py``): provider
  clients for rows; the one seam where tests put fake providers in.
* :func:`event_record`, :func:`accounts_digest` (``store.py``).
* :mod:`.rules`: the status table itself (pure), with :class:`~rules.Tunables`,
  the lifecycle's settings.

Every status, reason and failure count is decided by :func:`rules.decide`.
"""

from . import rules
from .check import CheckResult, LeaseLost, Outcome, connection_check
from .claims import SWEEP_OWNER_PREFIX, connections_claim_due, due_queryset
from .clients import (
    app_config,
    client_class_for,
    client_for_app,
    clients_forget,
    connection_state,
    household_grouping,
)
from .config import tunables
from .grants import (
    ConnectedMeanwhile,
    GrantRefused,
    ReconnectMismatch,
    connection_disconnect,
    connection_start,
    connections_abandon,
    grant_apply,
)
from .provider_apps import app_credentials_accepted, app_credentials_rejected
from .store import accounts_digest, event_record

__all__ = [
    "SWEEP_OWNER_PREFIX",
    "CheckResult",
    "ConnectedMeanwhile",
    "GrantRefused",
    "LeaseLost",
    "Outcome",
    "ReconnectMismatch",
    "accounts_digest",
    "app_config",
    "app_credentials_accepted",
    "app_credentials_rejected",
    "client_class_for",
    "client_for_app",
    "clients_forget",
    "connection_check",
    "connection_disconnect",
    "connection_start",
    "connection_state",
    "connections_abandon",
    "connections_claim_due",
    "due_queryset",
    "event_record",
    "grant_apply",
    "household_grouping",
    "rules",
    "tunables",
]
