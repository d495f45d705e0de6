"""Dapi: an access code from the Connect page, exchanged for a permanent token.

The browser goes to Dapi's Connect page and comes back with an access code
(valid 30 minutes, single use), the connection id, the user id and a user
secret. The callback exchanges the code at once for an access token that never
expires; it stops working only when the user's link is delinked.

Which Dapi user the connection belongs to (the id a reconnect must match)
comes from Dapi's own answer to the token (identity), never from the
callback's ``userID``: that one travels through the browser, and whoever is
in the browser can rewrite it. Everything else the callback carries is proven
server-side too: the code by the exchange (bound to its connection id), the
user secret by every data call made with the token.

Every assumption the docs leave open is a named constant or function below,
marked ``[assumed]`` (docs/provider-assumptions.md pins them down).
"""

# Wire names (paths, header and field names, error codes) trip the hardcoded-password
# check; none of them is a secret.
# ruff: noqa: S105

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import ClassVar, Literal
from urllib.parse import urlencode

from .base import AccountData, AuthorizationStart, ConnectionState, Grant, ProviderClient, bearer
from .errors import AuthorizationDenied, ErrorKind, FailureReason, ProviderError
from .http import HttpReply
from .replies import JsonObject, clean_provider_text

# [assumed] The browser-facing Connect page and its query parameters.
CONNECT_PATH = "/connect"
CONNECT_APP_KEY = "appKey"
CONNECT_STATE = "state"
CONNECT_REDIRECT_URI = "redirectUri"
# [doc] Exchange endpoint; [assumed] data and delink endpoints.
EXCHANGE_PATH = "/v2/auth/ExchangeToken"
ACCOUNTS_PATH = "/v2/data/accounts/get"
# [assumed] Who a token belongs to: POST with the Bearer token and
# {"appSecret", "userSecret"} (as accounts/get), answering
# {"success": true, "identity": {"id": "<userID>", ...}}. Its id is the
# connection's external account id: the same-account proof of a reconnect.
IDENTITY_PATH = "/v2/data/identity/get"
DELINK_PATH = "/v2/users/DelinkUser"

# [doc] The access code must be exchanged within 30 minutes, once. Shown as
# the "reconnect by" of a connect that has not been exchanged yet.
ACCESS_CODE_LIFETIME = timedelta(minutes=30)

# [assumed] Callback query parameters on success, and on denial; ``state``
# (the portal's own) comes back unchanged on both.
CALLBACK_STATE = "state"
CALLBACK_ACCESS_CODE = "accessCode"
CALLBACK_CONNECTION_ID = "connectionID"
CALLBACK_USER_SECRET = "userSecret"
# Sent by Dapi, and allowed through, but never trusted: the identity call says who the user is.
CALLBACK_USER_ID = "userID"
CALLBACK_TOKEN_ID = "tokenID"
CALLBACK_ERROR = "error"
CALLBACK_ERROR_DESCRIPTION = "error_description"
CALLBACK_DENIED = "access_denied"

# [assumed] The ``type`` of a failed reply, and what each means.
TYPE_INVALID_ACCESS_CODE = "INVALID_ACCESS_CODE"
TYPE_INVALID_APP_SECRET = "INVALID_APP_SECRET"
TYPE_TOKEN_DELINKED = "TOKEN_DELINKED"
TYPE_INVALID_TOKEN = "INVALID_TOKEN"


def failure_for_type(error_type: str | None, *, status: int, source: str) -> ProviderError | None:
    """[assumed] The one mapping of Dapi's error ``type`` to our taxonomy; ``None`` if unknown."""
    if error_type == TYPE_INVALID_ACCESS_CODE:
        return ProviderError.reauth(
            FailureReason.EXPIRED,
            f"{source}: the access code expired or was already used (it is valid {ACCESS_CODE_LIFETIME.seconds // 60}"
            " minutes, once). Start the connection again.",
            status_code=status,
        )
    if error_type == TYPE_INVALID_APP_SECRET:
        return ProviderError.app_credentials(
            f"Dapi rejected the portal's app secret (HTTP {status}).", status_code=status
        )
    if error_type in (TYPE_TOKEN_DELINKED, TYPE_INVALID_TOKEN):
        return ProviderError.reauth(
            FailureReason.REVOKED,
            f"{source}: the link was removed at Dapi (delinked). Ask the client to reconnect.",
            status_code=status,
        )
    return None


class DapiClient(ProviderClient):
    key: ClassVar[str] = "dapi"
    display_name: ClassVar[str] = "Dapi"
    flow: ClassVar[Literal["redirect", "form"]] = "redirect"
    platforms: ClassVar[Sequence[str]] = ("binance", "bitstamp", "kraken")
    authorization_code_lifetime: ClassVar[timedelta | None] = ACCESS_CODE_LIFETIME
    callback_parameters: ClassVar[frozenset[str]] = frozenset(
        {
            CALLBACK_STATE,
            CALLBACK_ACCESS_CODE,
            CALLBACK_CONNECTION_ID,
            CALLBACK_USER_SECRET,
            CALLBACK_USER_ID,
            CALLBACK_TOKEN_ID,
            CALLBACK_ERROR,
            CALLBACK_ERROR_DESCRIPTION,
        }
    )
    # [doc] The app key opens Connect; the app secret goes with every call.
    partner_credentials: ClassVar[tuple[str, ...]] = ("client_id", "client_secret")
    # ExchangeToken, identity, accounts.
    connect_calls: ClassVar[int] = 3

    # --- authorization ---
    def start_authorization(
        self, *, state: str, platform: str, identity: str, grouping: Mapping[str, str], redirect_uri: str
    ) -> AuthorizationStart:
        """``{connect_url or base_url}/connect?appKey&state&redirectUri``."""
        redirect = redirect_uri or self.app.redirect_uri
        if not self.app.client_id or not redirect:
            raise ProviderError.app_credentials("Dapi: the app has no app key or redirect URI configured.")
        redirect = self.portal_callback(redirect)
        query = urlencode({CONNECT_APP_KEY: self.app.client_id, CONNECT_STATE: state, CONNECT_REDIRECT_URI: redirect})
        return AuthorizationStart(redirect_url=f"{self.browser_url(CONNECT_PATH)}?{query}")

    def complete_authorization(self, *, params: Mapping[str, str], platform: str, identity: str) -> Grant:
        """Exchange the access code for the permanent token, ask Dapi whose it is, read the accounts.

        ``external_account_id`` is the identity Dapi answers for the token; the
        callback's ``userID`` is ignored (the browser can rewrite it).
        """
        source = self.source(platform)
        error = params.get(CALLBACK_ERROR, "")
        if error:
            description = clean_provider_text(params.get(CALLBACK_ERROR_DESCRIPTION, ""))
            because = f" ({description})" if description else ""
            if error == CALLBACK_DENIED:
                raise AuthorizationDenied("denied", f"{source}: the client declined access{because}.")
            raise AuthorizationDenied("error", f"{source}: the authorization failed at Dapi{because}.")
        values: dict[str, str] = {}
        for name in (CALLBACK_ACCESS_CODE, CALLBACK_CONNECTION_ID, CALLBACK_USER_SECRET):
            value = (params.get(name) or "").strip()
            if not value:
                raise AuthorizationDenied("error", f"{source}: Dapi's reply was missing {name}. Start again.")
            values[name] = value

        access_token = self.exchange_token(
            access_code=values[CALLBACK_ACCESS_CODE], connection_id=values[CALLBACK_CONNECTION_ID], source=source
        )
        # Without Dapi's word on whose token this is there is no grant: a
        # transient failure here means starting again (the code is spent).
        user_id = self.identity(access_token=access_token, user_secret=values[CALLBACK_USER_SECRET], source=source)
        credentials = [
            self.issue("permanent", access_token),
            self.issue("user_secret", values[CALLBACK_USER_SECRET]),
        ]
        state = ConnectionState(platform=platform, credentials={c.kind: c for c in credentials})
        try:
            accounts: Sequence[AccountData] | None = self.probe(connection=state)
        except ProviderError as exc:
            if exc.kind != ErrorKind.TRANSIENT:
                raise
            # The code is spent and the token is permanent: keep the grant, and
            # let the next scheduled probe read the accounts.
            accounts = None
        return Grant(
            credentials=credentials,
            external_account_id=user_id,
            grouping={"connectionID": values[CALLBACK_CONNECTION_ID]},
            accounts=accounts,
        )

    def exchange_token(self, *, access_code: str, connection_id: str, source: str = "Dapi") -> str:
        """[doc] POST ExchangeToken → the permanent access token."""
        reply = self.http.request(
            "POST",
            self.api_url(EXCHANGE_PATH),
            endpoint="ExchangeToken",
            json={"appSecret": self.app.client_secret, "accessCode": access_code, "connectionID": connection_id},
        )
        data = self._success(reply, source=source)
        return data.text("accessToken")

    def identity(self, *, access_token: str, user_secret: str, source: str = "Dapi") -> str:
        """[assumed] POST identity/get: the id of the Dapi user the token belongs to."""
        reply = self.http.request(
            "POST",
            self.api_url(IDENTITY_PATH),
            endpoint="identity",
            headers=bearer(access_token),
            json={"appSecret": self.app.client_secret, "userSecret": user_secret},
        )
        return self._success(reply, source=source).obj("identity").identifier("id")

    def _success(self, reply: HttpReply, *, source: str) -> JsonObject:
        """The body of a ``success: true`` reply; a mapped error for a typed failure."""
        data = reply.json_object()
        if reply.ok and data.boolean("success") is True:
            return data
        error_type = data.raw("type")
        failure = failure_for_type(
            error_type if isinstance(error_type, str) else None, status=reply.status, source=source
        )
        if failure is not None:
            raise failure
        if reply.ok:
            raise ProviderError.transient(f"{reply.where}: the reply said success false.", status_code=reply.status)
        raise reply.unexpected()

    # --- lifecycle ---
    def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
        """[assumed] POST accounts/get with the permanent token; a delinked or unknown token → ``revoked``."""
        source = self.source(connection.platform)
        token = self.credential(connection, "permanent")
        user_secret = self.credential(connection, "user_secret")
        if token is None or user_secret is None:
            raise ProviderError.reauth(
                FailureReason.EXPIRED,
                f"{source}: no access token is stored for this connection. Reconnect it.",
                nothing_sent=True,
            )
        reply = self.http.request(
            "POST",
            self.api_url(ACCOUNTS_PATH),
            endpoint="accounts",
            headers=bearer(token.value),
            json={"appSecret": self.app.client_secret, "userSecret": user_secret.value},
        )
        data = self._success(reply, source=source)
        return [AccountData.from_reply(item) for item in data.objects("accounts")]

    def revoke(self, *, connection: ConnectionState) -> None:
        """[assumed] POST DelinkUser. A token Dapi no longer knows counts as done."""
        token = self.credential(connection, "permanent")
        user_secret = self.credential(connection, "user_secret")
        if token is None:
            return
        reply = self.http.request(
            "POST",
            self.api_url(DELINK_PATH),
            endpoint="DelinkUser",
            headers=bearer(token.value),
            json={"appSecret": self.app.client_secret, "userSecret": user_secret.value if user_secret else ""},
        )
        try:
            self._success(reply, source=self.source(connection.platform))
        except ProviderError as exc:
            if exc.reason == FailureReason.REVOKED:
                return  # already delinked: exactly what a revoke wants
            raise
