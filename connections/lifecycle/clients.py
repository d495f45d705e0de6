"""Provider clients for ProviderApp rows: the one place the portal builds them.

Every provider call the portal makes goes through a client from
:func:`client_for_app`, and every client class comes from
``providers.registry`` at the moment it is built. That lookup is the single
seam where tests put fake providers in (``tests/provider_seam.py``).

Clients are cached per thread while their row is unchanged (an admin edit
moves ``updated_at``), so pooled HTTP connections and the app-token memo
survive between checks.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from ..crypto import DecryptionError
from ..models import Connection, Credential, Household, ProviderApp
from ..providers import registry
from ..providers.base import AppConfig, ConnectionState, IssuedCredential, ProviderClient
from ..providers.errors import ProviderError
from .store import credentials_upsert, issued_from

logger = logging.getLogger("connections.lifecycle")


class DbAppTokenCache:
    """An AppTokenCache backed by the ProviderApp's ``app`` Credential row, memoised per client instance.

    Every worker shares the row, so one fetch serves them all; the memo spares
    a query per call while the cached token is comfortably valid.
    """

    def __init__(self, app_id: int) -> None:
        self.app_id = app_id
        self._memo: IssuedCredential | None = None

    def load(self) -> IssuedCredential | None:
        memo = self._memo
        if memo is not None and (memo.expires_at is None or memo.expires_at - timezone.now() > self._fresh_for(memo)):
            return memo
        row = Credential.objects.filter(provider_app_id=self.app_id, kind=Credential.Kind.APP).first()
        self._memo = issued_from(row) if row is not None else None
        return self._memo

    @staticmethod
    def _fresh_for(credential: IssuedCredential) -> timedelta:
        # Trust the memo only while the token is far from its renewal point (a
        # quarter of its life, at least 2 minutes): nearer to it, read the row,
        # which the refresh_app_tokens job or another worker may already have
        # renewed, instead of every worker fetching a token of its own.
        lifetime = (credential.expires_at or credential.issued_at) - credential.issued_at
        return max(timedelta(minutes=2), lifetime / 4)

    def save(self, credential: IssuedCredential) -> None:
        credentials_upsert([credential], provider_app_id=self.app_id)
        self._memo = credential


# Words about a secret, not one.
UNREADABLE_APP_SECRET = (
    "The portal cannot read this app's stored client secret (no configured encryption key decrypts it). "  # noqa: S105
    "Enter the secret again in the admin, or restore the key that wrote it."
)


def app_config(app: ProviderApp, *, with_secret: bool = True) -> AppConfig:
    """What a client needs of the row. The secret is read (and decrypted) only ``with_secret``;
    one that no key decrypts is a ``ProviderError`` about the app, never a crash."""
    secret = ""
    if with_secret:
        try:
            secret = app.client_secret or ""
        except DecryptionError:
            raise ProviderError.app_credentials(UNREADABLE_APP_SECRET) from None
    return AppConfig(
        provider=app.provider,
        environment=app.environment,
        base_url=app.base_url,
        client_id=app.client_id,
        client_secret=secret,
        redirect_uri=app.redirect_uri,
        connect_url=app.connect_url,
    )


_clients = threading.local()
CLIENT_CACHE_SIZE = 64


def client_class_for(provider: str) -> type[ProviderClient]:
    """The client class for a provider key (``KeyError`` for an unknown one), looked up now."""
    return registry.client_class(provider)


def client_for_app(*, app: ProviderApp) -> ProviderClient:
    """A client for a ProviderApp row, its app token cached in the app's Credential row."""
    cls = client_class_for(app.provider)
    cache: dict[Any, ProviderClient] = getattr(_clients, "cache", None) or {}
    _clients.cache = cache
    key = (app.pk, app.updated_at, cls, app.base_url)
    client = cache.get(key)
    if client is None:
        if len(cache) > CLIENT_CACHE_SIZE:
            cache.clear()
        client = cls(app_config(app), app_token_cache=DbAppTokenCache(app.pk))
        cache[key] = client
    return client


def client_describing(*, app: ProviderApp) -> ProviderClient:
    """A client that only describes its provider (flow, platforms, credential form): never makes a call,
    so it is built without the app's secrets."""
    return client_class_for(app.provider)(app_config(app, with_secret=False))


def clients_forget() -> None:
    """Drop this thread's cached clients (their app-token memos with them)."""
    _clients.cache = {}


def deadline_fields(client: ProviderClient, state: ConnectionState) -> dict[str, Any]:
    """The connection's deadline as the client reads it from ``state``: when only the client can
    restore access, and whether that moment rolls forward at every renewal."""
    deadline = client.reconnect_deadline(state)
    return {"reconnect_by": deadline, "reconnect_by_rolls": deadline is not None and client.deadline_rolls(state)}


def household_grouping(household: Household) -> dict[str, str]:
    """Provider-side grouping a household shares across its connections (Turnqey's ``collection``).

    The one reader of ``Household.turnqey_collection``: a new or renewed
    connection is started in it, and a probe falls back to it. Providers
    without such grouping ignore it.
    """
    if household.turnqey_collection:
        return {"collection": str(household.turnqey_collection)}
    return {}


def household_grouping_adopt(*, household_id: int, grouping: dict[str, str]) -> None:
    """Remember a grant's shared grouping on a household that has none yet (Turnqey's collection),
    so the household's next connection joins it."""
    collection = grouping.get("collection")
    if not collection:
        return
    try:
        collection_id = uuid.UUID(collection)
    except ValueError:
        logger.warning("Household %s: the provider returned a collection that is not a UUID.", household_id)
        return
    Household.objects.filter(pk=household_id, turnqey_collection__isnull=True).update(turnqey_collection=collection_id)


def connection_state(*, connection: Connection, credentials: Iterable[Credential] | None = None) -> ConnectionState:
    """What a provider client needs of the row: platform, account id, decrypted credentials, grouping.

    ``credentials`` are the connection's rows when the caller has read them;
    otherwise its ``credentials`` (prefetched, or read now). The client's
    partner-side identity and the household's grouping come along when the
    caller loaded them (connect flows do; a routine check does not, because a
    connection keeps its own grouping from its grant, and two more queries per
    check would be spent on nothing).
    """
    rows = connection.credentials.all() if credentials is None else credentials
    grouping = {str(k): str(v) for k, v in (connection.grouping or {}).items() if v not in (None, "")}
    client = connection.client if Connection.client.is_cached(connection) else None
    household = connection.household if Connection.household.is_cached(connection) else None
    return ConnectionState(
        platform=connection.platform,
        external_account_id=connection.external_account_id,
        credentials={row.kind: issued_from(row) for row in rows},
        grouping=grouping,
        identity=str(client.identity) if client is not None else "",
        household_grouping=household_grouping(household) if household is not None else {},
    )
