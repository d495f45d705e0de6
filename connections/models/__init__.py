"""The portal's domain model (see docs/architecture.md, "Domain model").

Rows only: decisions about status live in :mod:`connections.lifecycle.rules`,
writes in :mod:`connections.services`, reads in :mod:`connections.selectors`,
and names and messages in :mod:`connections.wording`.

One module per subject, every model importable from here (``from
connections.models import Connection``), all with the app label
``connections``: ``base`` (the shared vocabularies: Provider, Environment,
Status, Reason), ``people`` (firms, memberships, households, clients),
``provider_apps``, ``connection`` (connections, credentials, accounts),
``authorizations`` (authorization requests, client links), ``events`` (the
outbox), ``bookkeeping`` (attempt windows, periodic job runs) and ``requests``
(household reconnect requests, problems, notification settings).
"""

from __future__ import annotations

# isort: off
# In the order the models are registered in (each module after those it points at).
from .base import Environment, Provider, Reason, Status, TimeStamped
from .people import Client, Firm, Household, Membership
from .provider_apps import ENDPOINT_FIELDS, ProviderApp, SecretDeferringManager
from .connection import Account, Connection, Credential
from .authorizations import AuthorizationRequest, ClientLink
from .events import ConnectionEvent, ConnectionEventQuerySet
from .bookkeeping import AttemptWindow, PeriodicJobRun
from .requests import (
    BulkReconnectSend,
    ConnectionProblem,
    FirmNotificationPolicy,
    NotificationSettings,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
)
# isort: on

__all__ = [
    "ENDPOINT_FIELDS",
    "Account",
    "AttemptWindow",
    "AuthorizationRequest",
    "BulkReconnectSend",
    "Client",
    "ClientLink",
    "Connection",
    "ConnectionEvent",
    "ConnectionEventQuerySet",
    "ConnectionProblem",
    "Credential",
    "Environment",
    "Firm",
    "FirmNotificationPolicy",
    "Household",
    "Membership",
    "NotificationSettings",
    "PeriodicJobRun",
    "Provider",
    "ProviderApp",
    "Reason",
    "ReconnectRequest",
    "ReconnectRequestEmail",
    "ReconnectRequestItem",
    "SecretDeferringManager",
    "Status",
    "TimeStamped",
]
