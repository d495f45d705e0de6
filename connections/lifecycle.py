"""The connection lifecycle: the one place that decides status transitions.

Provider clients report what they saw as a :class:`ProviderError` kind; this
module alone turns that into a status, a reason, a next check time and a
:class:`ConnectionEvent`. Views, tasks and commands call these functions and
never set ``Connection.status`` themselves.

CONTRACT (implemented below; other modules rely on these names and signatures)
-----------------------------------------------------------------------------
event_record(*, connection, kind, message="", from_status="", to_status="",
             reason="", actor=None, actor_label="", details=None) -> ConnectionEvent
credentials_store(*, connection, issued) -> None
    Upsert one Credential per kind, committed before anything else happens.
connection_state(*, connection) -> providers.base.ConnectionState
client_for_app(*, app) -> providers.base.ProviderClient
    A client for a ProviderApp row, its app token cached in a Credential row.
grant_apply(*, connection, grant, purpose, actor=None, actor_label="") -> Connection
    Store credentials/accounts from a completed authorization and make the
    connection active. On reconnect, refuses a different source account with
    :class:`ReconnectMismatch` (nothing changes).
connection_disconnect(*, connection, actor=None, actor_label="") -> Connection
    Revoke at the provider where possible, delete secrets, status disconnected.
connection_check(*, connection_id, actor_label="job:check", force=False) -> CheckResult
    Renew when due, probe, store accounts, apply the outcome.
"""

from __future__ import annotations


class ReconnectMismatch(Exception):
    """A reconnect signed in to a different source account than the one stored."""
