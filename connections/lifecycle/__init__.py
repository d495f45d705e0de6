"""The connection lifecycle: connect, check, renew, flag, recover, disconnect.

The public contract (everything else in the package is its inside):

* :func:`connection_check` (``check.py``): claim, renew when due, probe, apply
  the rules, store; returns a :class:`CheckResult` whose ``outcome`` is an
  :class:`Outcome` value. Never raises for a provider problem.
  :func:`connections_check`: the same check for each of a chunk of
  connections (the sweep's), sharing their claim, reads and routine releases.
* :func:`grant_apply`, :func:`connection_start`, :func:`connection_disconnect`,
  :func:`connections_abandon` (``grants.py``): what people start. A reconnect
  to a different source account raises :class:`ReconnectMismatch`; a grant for
  a disconnected connection raises :class:`GrantRefused`.
* :func:`connections_claim_due`, :func:`due_queryset` (``claims.py``): the
  sweep's side of claiming. :func:`deadline_is_near_q`: :func:`rules.deadline_is_near`
  for a queryset (the attention list, problems, reconnect plans).
* :func:`app_credentials_rejected` / :func:`app_credentials_accepted`
  (``provider_apps.py``): the portal's own standing with a provider.
* :func:`client_for_app`, :func:`client_class_for`, :func:`connection_state`,
  :func:`app_config`, :func:`household_grouping` (``clients.py``): provider
  clients for rows; the one seam where tests put fake providers in.
  :func:`client_describing`: a client that only describes its provider (its
  credential form), built without the app's secrets. :func:`deadline_fields`:
  the connection's deadline as its client reads it.
* :func:`event_record`, :func:`accounts_digest` (``store.py``); for writers of
  many rows at once, :func:`event_row` (unsaved, masked), :func:`events_for`
  (the rules' events in words) and :func:`renewal_event`.
* :mod:`.rules`: the status table itself (pure), with :class:`~rules.Tunables`,
  the lifecycle's settings; :func:`tunables` reads them now, :func:`tunables_from`
  from any settings object (the system check).
* :class:`CheckFailure`, :func:`check_failure` (``outcomes.py``): what a
  provider's error at one stage of a check means, for the demo's histories to
  word a failure exactly as a check would.
* Seeding only (the demo, which stores a grant's credentials without a
  transition): :func:`credentials_upsert`, :func:`credentials_keep_only`,
  :func:`household_grouping_adopt`.

Every status, reason and failure count is decided by :func:`rules.decide`.
"""

from . import rules
from .check import CheckResult, LeaseLost, Outcome, connection_check
from .chunk import connections_check
from .claims import SWEEP_OWNER_PREFIX, connections_claim_due, deadline_is_near_q, due_queryset
from .clients import (
    app_config,
    client_class_for,
    client_describing,
    client_for_app,
    clients_forget,
    connection_state,
    deadline_fields,
    household_grouping,
    household_grouping_adopt,
)
from .config import tunables, tunables_from
from .grants import (
    ConnectedMeanwhile,
    GrantRefused,
    ReconnectMismatch,
    connection_disconnect,
    connection_start,
    connections_abandon,
    grant_apply,
)
from .outcomes import CheckFailure, check_failure
from .provider_apps import app_credentials_accepted, app_credentials_rejected
from .store import (
    accounts_digest,
    credentials_keep_only,
    credentials_upsert,
    event_record,
    event_row,
    events_for,
    renewal_event,
)

__all__ = [
    "SWEEP_OWNER_PREFIX",
    "CheckFailure",
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
    "check_failure",
    "client_class_for",
    "client_describing",
    "client_for_app",
    "clients_forget",
    "connection_check",
    "connection_disconnect",
    "connection_start",
    "connection_state",
    "connections_abandon",
    "connections_check",
    "connections_claim_due",
    "credentials_keep_only",
    "credentials_upsert",
    "deadline_fields",
    "deadline_is_near_q",
    "due_queryset",
    "event_record",
    "event_row",
    "events_for",
    "grant_apply",
    "household_grouping",
    "household_grouping_adopt",
    "renewal_event",
    "rules",
    "tunables",
    "tunables_from",
]
