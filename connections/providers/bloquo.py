"""Bloquo: client credentials per connection.

The client types the ``clientId`` / ``clientSecret`` pair Bloquo gave them. The
portal keeps the pair (encrypted, as one ``api_key`` credential) and trades it
for a Bearer token whenever the last one lapses: there is no refresh token and
no revoke endpoint. Staging and production are separate ProviderApps with
separate base URLs (and separate credentials at Bloquo).

Every assumption the docs leave open is a named constant or function below,
marked ``[assumed]`` (docs/provider-assumptions.md pins them down).
"""

# Wire names (paths, header and field names, error codes) trip the hardcoded-password
# check; none of them is a secret.
# ruff: noqa: S105

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from .base import AccountData, ConnectionState, FormField, Grant, IssuedCredential, ProviderClient, bearer, renew_at
from .errors import FailureReason, ProviderError
from .http import HttpReply
from .replies import JsonObject

# [assumed path, doc body] Token endpoint.
TOKEN_PATH = "/api/v1/auth/token"
# [assumed] The customer (its id is the connection's external account id) and accounts.
CUSTOMER_PATH = "/api/v1/accounting/customer"
ACCOUNTS_PATH = "/api/v1/accounting/accounts"

# [doc] The staging host; production's is handed out by Bloquo on request.
STAGING_BASE_URL = "https://staging-api.bloquo.io"
STAGING_HOST = "staging-api.bloquo.io"

# A new token is requested when less than max(120 s, 10 % of its life) remains.
ACCESS_TOKEN_MIN_MARGIN = timedelta(seconds=120)

# The stored api_key credential: the typed pair, JSON-encoded under these names.
API_KEY_CLIENT_ID = "clientId"
API_KEY_CLIENT_SECRET = "clientSecret"


def encode_api_key(client_id: str, client_secret: str) -> str:
    """The ``api_key`` credential value for a typed pair."""
    return json.dumps({API_KEY_CLIENT_ID: client_id, API_KEY_CLIENT_SECRET: client_secret})


def decode_api_key(value: str) -> tuple[str, str] | None:
    """The pair back from an ``api_key`` value; ``None`` if it is not one."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    client_id, client_secret = data.get(API_KEY_CLIENT_ID), data.get(API_KEY_CLIENT_SECRET)
    if not isinstance(client_id, str) or not isinstance(client_secret, str) or not client_id or not client_secret:
        return None
    return client_id, client_secret


class BloquoClient(ProviderClient):
    key: ClassVar[str] = "bloquo"
    display_name: ClassVar[str] = "Bloquo"
    flow: ClassVar[Literal["redirect", "form"]] = "form"
    platforms: ClassVar[Sequence[str]] = ("bloquo",)
    documented_base_urls: ClassVar[Mapping[str, str]] = {"sandbox": STAGING_BASE_URL}
    # [doc] Key pairs belong to the customer: the partner app itself holds none.
    partner_credentials: ClassVar[tuple[str, ...]] = ()
    # Token, customer, accounts.
    connect_calls: ClassVar[int] = 3

    def api_url(self, path: str) -> str:
        """As the base class, refusing a production app that points at Bloquo's staging host."""
        url = super().api_url(path)
        if self.app.environment == "production" and urlsplit(url).hostname == STAGING_HOST:
            raise ProviderError.app_credentials(
                "Bloquo: this production app points at the staging API; production has its own URL and credentials."
            )
        return url

    # --- form ---
    def credential_fields(self) -> Sequence[FormField]:
        return (
            FormField(
                name="clientId",
                label="Bloquo client ID",
                help_text="From the client's Bloquo API settings.",
                help_text_for_client="From your Bloquo API settings.",
            ),
            FormField(
                name="clientSecret",
                label="Bloquo client secret",
                secret=True,
                input_type="password",
                help_text="Stored encrypted; used only to request read access tokens.",
            ),
        )

    def connect_with_credentials(self, *, fields: Mapping[str, str], platform: str) -> Grant:
        """Token → customer → accounts. The pair is kept (as ``api_key``) to request later tokens."""
        cleaned = self.clean_credential_fields(fields)
        client_id, client_secret = cleaned["clientId"], cleaned["clientSecret"]
        access = self.request_token(client_id, client_secret)
        customer = self._get(CUSTOMER_PATH, access.value, endpoint="customer").obj("data")
        accounts = self._accounts(access.value)
        return Grant(
            credentials=[self.issue("api_key", encode_api_key(client_id, client_secret)), access],
            external_account_id=customer.identifier("id"),
            accounts=accounts,
        )

    # --- tokens ---
    def request_token(self, client_id: str, client_secret: str) -> IssuedCredential:
        """POST the pair for a Bearer token. 400/401 → ``credentials_invalid``; 403 → ``revoked``."""
        reply = self.http.request(
            "POST",
            self.api_url(TOKEN_PATH),
            endpoint="token",
            json={API_KEY_CLIENT_ID: client_id, API_KEY_CLIENT_SECRET: client_secret},
        )
        if reply.status in (400, 401):
            raise ProviderError.reauth(
                FailureReason.CREDENTIALS_INVALID,
                "Bloquo did not accept the client id and secret. Ask the client for new ones.",
                status_code=reply.status,
            )
        data = self._answer(reply)
        token_type = data.text("tokenType")
        if token_type.lower() != "bearer":
            raise data.invalid("tokenType", "is not Bearer")
        return self.issue(
            "access", data.text("accessToken"), lifetime=timedelta(seconds=data.integer("expiresIn", minimum=1))
        )

    @staticmethod
    def _answer(reply: HttpReply) -> JsonObject:
        """The JSON object of a reply whose caller has already dealt with the statuses it reads its own way.

        403 (on the token call and on reads alike) → ``revoked``; any other
        non-200 → unexpected; ``"status": false`` in a 200 → transient.
        """
        data = reply.json_object_unless_revoked("Bloquo: the API key has been revoked. Ask the client to reconnect.")
        if data.boolean("status") is not True:
            raise ProviderError.transient(f"{reply.where}: the reply said status false.", status_code=reply.status)
        return data

    def _get(self, path: str, access_token: str, *, endpoint: str) -> JsonObject:
        reply = self.http.request("GET", self.api_url(path), endpoint=endpoint, headers=bearer(access_token))
        if reply.status == 401:
            raise ProviderError.access_token_rejected("Bloquo did not accept the access token.", status_code=401)
        return self._answer(reply)

    def _accounts(self, access_token: str) -> list[AccountData]:
        data = self._get(ACCOUNTS_PATH, access_token, endpoint="accounts")
        return [AccountData.from_reply(item) for item in data.objects("data")]

    # --- lifecycle ---
    def renewal_due_at(self, connection: ConnectionState) -> datetime | None:
        if self.credential(connection, "api_key") is None:
            return None
        access = self.credential(connection, "access")
        if access is None:
            return self.now()
        return renew_at(access, ACCESS_TOKEN_MIN_MARGIN)

    def renew(self, *, connection: ConnectionState) -> Sequence[IssuedCredential]:
        """A new access token from the stored pair (Bloquo has no refresh token)."""
        api_key = self.credential(connection, "api_key")
        pair = decode_api_key(api_key.value) if api_key is not None else None
        if pair is None:
            raise ProviderError.reauth(
                FailureReason.CREDENTIALS_INVALID,
                "Bloquo: no usable client id and secret are stored. Ask the client to reconnect.",
                nothing_sent=True,
            )
        return [self.request_token(*pair)]

    def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
        """The accounts. 401 (or no live access token) → ``access_rejected``; 403 → ``revoked``."""
        access = self.credential(connection, "access")
        if access is None or self.is_lapsed(access):
            raise ProviderError.access_token_rejected(
                "Bloquo: the access token has lapsed; renew it first.", nothing_sent=True
            )
        return self._accounts(access.value)
