"""Turnqey: an app token for the portal, and a browser redirect per connection.

The portal holds one app token per ProviderApp (``POST /v1/api/token`` with
header credentials), cached in the :class:`AppTokenCache` and fetched again
ahead of its ``expiresOn``. Connections hold no secret of their own: a
connection is one (identity, platform) pair inside a household's collection,
and its accounts are read with the app token.

The callback comes back through the browser, and whoever is in the browser
can rewrite it. So it may end a flow (``denied``, ``error``) but never builds
a grant: the collection, the source account id and whether access is live
all come from Turnqey's own answer (accounts by identity), and ``success``
with no active account there is no grant.

Every assumption the docs leave open is a named constant or function below,
marked ``[assumed]`` (docs/provider-assumptions.md pins them down).
"""

# Wire names (paths, header and field names, error codes) trip the hardcoded-password
# check; none of them is a secret.
# ruff: noqa: S105

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Literal
from urllib.parse import quote, urlencode

from .base import (
    AccountData,
    AuthorizationStart,
    ConnectionState,
    Grant,
    IssuedCredential,
    ProviderClient,
    bearer,
    renew_at,
)
from .errors import AuthorizationDenied, FailureReason, ProviderError
from .http import HttpReply
from .replies import JsonObject, clean_provider_text, parse_timestamp

# [doc] App token endpoint; credentials travel as headers. The doc's curl
# example says GET, its table POST: POST is what we send.
TOKEN_PATH = "/v1/api/token"
TOKEN_METHOD = "POST"
TOKEN_HEADER_CLIENT_ID = "clientId"
TOKEN_HEADER_CLIENT_SECRET = "clientSecret"
# [doc] Browser authorization endpoint.
AUTHORIZE_PATH = "/authorize"
# [assumed] Account endpoints, read with the app token as a Bearer token.
COLLECTION_ACCOUNTS_PATH = "/v1/api/collections/{collection}/accounts"
IDENTITY_ACCOUNTS_PATH = "/v1/api/identities/{identity}/accounts"

# [assumed] Callback query parameters Turnqey appends to the registered redirect URI.
CALLBACK_STATE = "state"
CALLBACK_IDENTITY = "identity"
# Allowed through, never trusted: the grant reads the collection from Turnqey itself.
CALLBACK_COLLECTION = "collection"
CALLBACK_PLATFORM = "platform"
CALLBACK_STATUS = "status"
CALLBACK_ERROR_DESCRIPTION = "error_description"
CALLBACK_SUCCESS = "success"
CALLBACK_DENIED = "denied"
CALLBACK_ERROR = "error"

# [assumed] Each account's status.
ACCOUNT_ACTIVE = "active"
ACCOUNT_EXPIRED = "expired"
ACCOUNT_REVOKED = "revoked"
ACCOUNT_STATUSES = frozenset({ACCOUNT_ACTIVE, ACCOUNT_EXPIRED, ACCOUNT_REVOKED})

# The app token is fetched again when less than max(60 s, 10 % of its
# lifetime) remains, so no call ever goes out with a token about to lapse.
APP_TOKEN_MIN_MARGIN = timedelta(seconds=60)


def authorization_checksum(params: Mapping[str, str], secret: str) -> str:
    """[assumed] The ``checksum`` query parameter of the authorize URL.

    Lowercase hex HMAC-SHA256 keyed by the client secret (UTF-8) over
    ``urlencode(sorted(params))`` of every other parameter with a non-empty
    value (``checksum`` itself and an empty ``collection`` are left out).
    """
    signed = sorted((name, value) for name, value in params.items() if name != "checksum" and value)
    message = urlencode(signed)
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def envelope_error_detail(body: JsonObject) -> str:
    """Plain words from an error envelope's ``responseException.exceptionMessage``.

    It is either a string or (the 400 validation envelope) an object whose
    ``errors`` map each field to its messages; those reach the text. Never raises.
    """
    exception = body.raw("responseException")
    message = exception.get("exceptionMessage") if isinstance(exception, dict) else None
    if isinstance(message, str):
        return clean_provider_text(message) or "no details given"
    if isinstance(message, dict):
        parts: list[str] = []
        errors = message.get("errors")
        if isinstance(errors, dict):
            for name, texts in errors.items():
                words = [t for t in (texts if isinstance(texts, list) else [texts]) if isinstance(t, str) and t]
                # The messages already name their field ("The ClientId field is
                # required."); a bare field name stands in when there is none.
                parts.extend(words or [f"{name} is invalid."])
        title = message.get("title")
        title = title if isinstance(title, str) else ""
        text = " ".join([title, *parts]).strip()
        return clean_provider_text(text, limit=300) or "no details given"
    return "no details given"


@dataclass(frozen=True)
class TurnqeyAccount:
    """One account as Turnqey lists it, with the fields that place it."""

    account: AccountData
    identity: str
    platform: str
    collection: str
    source_account_id: str


class TurnqeyClient(ProviderClient):
    key: ClassVar[str] = "turnqey"
    display_name: ClassVar[str] = "Turnqey"
    flow: ClassVar[Literal["redirect", "form"]] = "redirect"
    platforms: ClassVar[Sequence[str]] = ("coinbase", "gemini", "kraken", "binance")
    documented_base_urls: ClassVar[Mapping[str, str]] = {
        "production": "https://api.turnqey.xyz",
        "sandbox": "https://sandbox.turnqey.xyz",
    }
    callback_parameters: ClassVar[frozenset[str]] = frozenset(
        {
            CALLBACK_STATE,
            CALLBACK_IDENTITY,
            CALLBACK_COLLECTION,
            CALLBACK_PLATFORM,
            CALLBACK_STATUS,
            CALLBACK_ERROR_DESCRIPTION,
        }
    )
    # [doc] The app token is bought with the client id and secret.
    partner_credentials: ClassVar[tuple[str, ...]] = ("client_id", "client_secret")
    # The app token (when the cached one is due) and the identity's accounts.
    connect_calls: ClassVar[int] = 2

    # --- app token ---
    def app_token(self) -> IssuedCredential:
        """The cached app token, fetched again when close to its ``expiresOn``."""
        cached = self.app_token_cache.load()
        if cached is not None and cached.value and not self._app_token_due(cached):
            return cached
        return self.fetch_app_token()

    def _app_token_due(self, token: IssuedCredential) -> bool:
        due = renew_at(token, APP_TOKEN_MIN_MARGIN)
        return due is not None and due <= self.now()

    def fetch_app_token(self) -> IssuedCredential:
        """Ask Turnqey for a new app token and cache it."""
        headers = {"accept": "application/json"}
        # A header left out (rather than sent empty) lets Turnqey's validation
        # envelope say exactly which credential the app is missing.
        if self.app.client_id:
            headers[TOKEN_HEADER_CLIENT_ID] = self.app.client_id
        if self.app.client_secret:
            headers[TOKEN_HEADER_CLIENT_SECRET] = self.app.client_secret
        reply = self.http.request(TOKEN_METHOD, self.api_url(TOKEN_PATH), endpoint="app token", headers=headers)
        if reply.status in (400, 401):
            detail = envelope_error_detail(reply.json_object())
            raise ProviderError.app_credentials(
                f"Turnqey rejected the portal's client credentials (HTTP {reply.status}): {detail}",
                status_code=reply.status,
            )
        result = self._result(reply)
        token = result.text("token")
        # [assumed] Whole seconds left, rounded down (3599 for the hour): a token
        # with under a second to live says 0, which is still a valid reply.
        expires_in = result.integer("expiresIn", minimum=0)
        issued_at = self.now()
        expires_at = issued_at + timedelta(seconds=expires_in)
        if result.has("expiresOn"):
            expires_on = parse_timestamp(result.raw("expiresOn"))
            if expires_on is None:
                raise result.invalid("expiresOn", "is not an ISO 8601 timestamp with an offset")
            # expiresOn is authoritative; a provider clock far behind ours would
            # make it look past already, and expiresIn (relative) is then safer
            # than fetching a new token on every call.
            if expires_on > issued_at:
                expires_at = expires_on
        credential = IssuedCredential(kind="app", value=token, issued_at=issued_at, expires_at=expires_at)
        self.app_token_cache.save(credential)
        return credential

    def _result(self, reply: HttpReply) -> JsonObject:
        """The ``result`` of a success envelope; anything else is a transient error with the envelope's words."""
        body = reply.json_object()
        if reply.ok and body.boolean("isError") is False:
            return body.obj("result")
        if reply.ok:
            raise ProviderError.transient(
                f"{reply.where}: the reply was marked as an error: {envelope_error_detail(body)}",
                status_code=reply.status,
            )
        raise reply.unexpected(envelope_error_detail(body))

    def _api_get(self, path: str, *, endpoint: str) -> HttpReply:
        """GET with the app token; a rejected token is fetched again once, then it is the app's problem."""
        token = self.app_token()
        reply = self.http.request("GET", self.api_url(path), endpoint=endpoint, headers=bearer(token.value))
        if reply.status != 401:
            return reply
        fresh = self.fetch_app_token()
        reply = self.http.request("GET", self.api_url(path), endpoint=endpoint, headers=bearer(fresh.value))
        if reply.status == 401:
            raise ProviderError.app_credentials(
                "Turnqey refused a freshly issued app token; check the app's client credentials.",
                status_code=401,
            )
        return reply

    # --- accounts ---
    def accounts_by_collection(self, collection: str) -> list[TurnqeyAccount] | None:
        """Accounts of a collection; ``None`` when Turnqey says it does not exist."""
        reply = self._api_get(
            COLLECTION_ACCOUNTS_PATH.format(collection=quote(collection, safe="")),
            endpoint="accounts by collection",
        )
        if self._is_not_found(reply):
            return None
        return self._accounts(reply)

    def accounts_by_identity(self, identity: str) -> list[TurnqeyAccount]:
        reply = self._api_get(
            IDENTITY_ACCOUNTS_PATH.format(identity=quote(identity, safe="")), endpoint="accounts by identity"
        )
        if self._is_not_found(reply):
            return []
        return self._accounts(reply)

    @staticmethod
    def _is_not_found(reply: HttpReply) -> bool:
        """A 404 in Turnqey's own error envelope; an HTML 404 (a wrong base URL) is no verdict."""
        return reply.status == 404 and reply.json_object().boolean("isError") is True

    def _accounts(self, reply: HttpReply) -> list[TurnqeyAccount]:
        accounts: list[TurnqeyAccount] = []
        for item in self._result(reply).objects("accounts"):
            status = item.text("status")
            if status not in ACCOUNT_STATUSES:
                raise item.invalid("status", "is not one of active, expired, revoked")
            accounts.append(
                TurnqeyAccount(
                    account=AccountData.from_reply(item, status=status),
                    identity=item.text("identity"),
                    platform=item.text("platform"),
                    collection=item.text("collection"),
                    source_account_id=item.identifier("sourceAccountId"),
                )
            )
        return accounts

    # --- authorization ---
    def start_authorization(
        self, *, state: str, platform: str, identity: str, grouping: Mapping[str, str], redirect_uri: str
    ) -> AuthorizationStart:
        """The authorize URL. Turnqey redirects to the URI registered for the client, so ``redirect_uri`` is unused."""
        if not self.app.client_id or not self.app.client_secret:
            raise ProviderError.app_credentials("Turnqey: the app has no client id or client secret configured.")
        params = {
            "client": self.app.client_id,
            "platform": platform,
            "identity": identity,
            "state": state,
        }
        collection = grouping.get("collection") or ""
        if collection:
            params["collection"] = collection
        checksum = authorization_checksum(params, self.app.client_secret)
        query = urlencode([*sorted(params.items()), ("checksum", checksum)])
        return AuthorizationStart(redirect_url=f"{self.browser_url(AUTHORIZE_PATH)}?{query}", checksum=checksum)

    def complete_authorization(self, *, params: Mapping[str, str], platform: str, identity: str) -> Grant:
        """Callback → Grant, built from Turnqey's accounts of ``identity`` on ``platform``, never from the callback.

        ``denied`` and ``error`` end the flow; ``success`` only sends the portal
        to ask. The grant's collection, source account id and accounts are the
        active ones Turnqey lists; none active is no grant (an ``error``
        outcome), whatever the browser said.
        """
        source = self.source(platform)
        status = params.get(CALLBACK_STATUS, "")
        description = clean_provider_text(params.get(CALLBACK_ERROR_DESCRIPTION, ""))
        if status == CALLBACK_DENIED:
            because = f" ({description})" if description else ""
            raise AuthorizationDenied("denied", f"{source}: the client declined access{because}.")
        if status == CALLBACK_ERROR:
            because = f": {description}" if description else "."
            raise AuthorizationDenied("error", f"{source}: the authorization failed at Turnqey{because}")
        if status != CALLBACK_SUCCESS:
            raise AuthorizationDenied("error", f"{source}: Turnqey returned no recognisable result. Try again.")
        returned_identity = params.get(CALLBACK_IDENTITY, "")
        if returned_identity and returned_identity != identity:
            raise AuthorizationDenied("error", f"{source}: Turnqey returned a different client identity.")
        returned_platform = params.get(CALLBACK_PLATFORM, "")
        if returned_platform and returned_platform != platform:
            # Not named: the callback came through the browser, and its words are not Turnqey's.
            raise AuthorizationDenied("error", f"{source}: Turnqey authorized a different platform than the one asked.")

        # The callback's collection is not read: only Turnqey's answer says
        # which collection the authorization lives in.
        mine = [a for a in self.accounts_by_identity(identity) if a.platform == platform and a.identity == identity]
        if not mine:
            raise ProviderError.transient(
                f"{source}: Turnqey reported success but lists no accounts for this client yet. Try again shortly."
            )
        active = [a for a in mine if a.account.status == ACCOUNT_ACTIVE]
        if not active:
            # "success" in the browser, but Turnqey says the access is expired or revoked.
            raise AuthorizationDenied(
                "error",
                f"{source}: Turnqey does not list this authorization as active, so nothing was connected. "
                "Ask the client to approve access again.",
            )
        # A connection is one (identity, platform) pair: its accounts share one
        # holder at the platform, whose id a reconnect must return unchanged.
        return Grant(
            credentials=(),
            external_account_id=active[0].source_account_id,
            grouping={"collection": active[0].collection, "identity": identity},
            accounts=[a.account for a in active],
        )

    # --- lifecycle ---
    def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
        """Accounts of the connection's collection, narrowed to its identity and platform.

        Any ``revoked`` account → ``revoked``; all ``expired`` → ``expired``;
        otherwise the active accounts. The collection and identity are the
        connection's own grouping, else the household's collection and the
        client's identity.
        """
        source = self.source(connection.platform)
        # A row stored before connections kept their own grouping lives in the
        # household's collection, under the client's identity.
        collection = connection.grouping.get("collection") or connection.household_grouping.get("collection", "")
        identity = connection.grouping.get("identity") or connection.identity
        if collection:
            found = self.accounts_by_collection(collection)
            if found is None:
                raise ProviderError.reauth(
                    FailureReason.REVOKED, f"{source}: Turnqey no longer knows this household's collection."
                )
        elif identity:
            found = self.accounts_by_identity(identity)
        else:
            raise ProviderError.reauth(
                FailureReason.EXPIRED,
                f"{source}: the connection has no Turnqey identity on record; reconnect it.",
                nothing_sent=True,
            )
        mine = [a for a in found if a.platform == connection.platform and (not identity or a.identity == identity)]
        if not mine:
            raise ProviderError.reauth(
                FailureReason.REVOKED, f"{source}: Turnqey no longer lists any accounts for this connection."
            )
        statuses = {a.account.status for a in mine}
        if ACCOUNT_REVOKED in statuses:
            raise ProviderError.reauth(FailureReason.REVOKED, f"{source}: access was revoked at the platform.")
        if statuses == {ACCOUNT_EXPIRED}:
            raise ProviderError.reauth(FailureReason.EXPIRED, f"{source}: the authorization expired at the platform.")
        return [a.account for a in mine if a.account.status == ACCOUNT_ACTIVE]

    def revoke(self, *, connection: ConnectionState) -> None:
        """Turnqey has no revoke endpoint: disconnecting forgets locally."""
        return None
