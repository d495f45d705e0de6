"""Coinify: end-user grants with rotating refresh tokens.

A connection starts from the client's email and password (used once, never
stored) or from an offline token, and then lives on access tokens (20
minutes) renewed with the offline token when there is one, otherwise with the
refresh token (24 hours, rotating: each refresh returns a new one and
invalidates the old, so the caller stores the result before anything else and
never runs two refreshes of one connection at once).

Every assumption the docs leave open is a named constant or function below,
marked ``[assumed]`` (docs/provider-assumptions.md pins them down).
"""

# Wire names (paths, header and field names, error codes) trip the hardcoded-password
# check; none of them is a secret.
# ruff: noqa: S105

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from .base import (
    AccountData,
    ConnectionState,
    CredentialForm,
    FormField,
    Grant,
    IssuedCredential,
    ProviderClient,
    bearer,
    renew_at,
)
from .errors import FailureReason, InvalidCredentialFields, ProviderError
from .http import HttpReply

logger = logging.getLogger("connections.providers.coinify")

# [doc] Endpoints.
AUTH_PATH = "/auth"
REVOKE_PATH = "/auth/revoke"
# [assumed] Health probe: the signed-in user and their accounts.
ME_PATH = "/me"

# [doc] Grant types.
GRANT_PASSWORD = "password"
GRANT_REFRESH_TOKEN = "refresh_token"
GRANT_OFFLINE_TOKEN = "offline_token"
# [doc] Revoke body's token_type_hint.
REVOKE_TOKEN_TYPE_HINT = "refresh_token"

# [doc] A refresh token lives 24 hours; the offline token never expires.
REFRESH_TOKEN_LIFETIME = timedelta(hours=24)
# [assumed] Refresh tokens rotate: a refresh returns a new one (24 hours from
# issue) and invalidates the one used; reusing it is invalid_grant.
REFRESH_TOKENS_ROTATE = True

# Renew the access token with max(2 minutes, 10 % of its life) to spare, and keep a
# refresh-token chain alive well before its 24 hours run out.
ACCESS_TOKEN_MIN_MARGIN = timedelta(minutes=2)
REFRESH_TOKEN_MIN_MARGIN = timedelta(hours=1)

# [assumed] The error_description texts of invalid_grant, and what each means.
INVALID_GRANT_DESCRIPTIONS: Mapping[str, tuple[FailureReason, str]] = {
    "Invalid email or password.": (
        FailureReason.CREDENTIALS_INVALID,
        "the email or password was not accepted",
    ),
    "Refresh token has expired.": (FailureReason.EXPIRED, "the sign-in expired"),
    "Refresh token has already been used.": (
        FailureReason.REVOKED,
        "the sign-in was used twice, so Coinify cancelled it",
    ),
    "Refresh token has been revoked.": (FailureReason.REVOKED, "the sign-in was revoked"),
    "Offline token is invalid.": (FailureReason.REVOKED, "the offline token is no longer valid"),
    "User account is deactivated.": (FailureReason.REVOKED, "the client's Coinify account is deactivated"),
}
# [assumed] Anything else with invalid_grant.
INVALID_GRANT_DEFAULT: tuple[FailureReason, str] = (FailureReason.EXPIRED, "the sign-in is no longer valid")


# What a credential form without the one or the other is told.
CHOOSE_ONE = "Enter either the email and password, or an offline token."


def invalid_grant_reason(description: str | None) -> tuple[FailureReason, str]:
    """[assumed] The one mapping of an ``invalid_grant`` ``error_description`` to a reason and plain words."""
    return INVALID_GRANT_DESCRIPTIONS.get((description or "").strip(), INVALID_GRANT_DEFAULT)


def _error_code(reply: HttpReply) -> str:
    """The OAuth2 ``error`` code of a reply, for a log line; never raises."""
    try:
        data = reply.json()
    except ProviderError:
        return "unreadable body"
    error = data.get("error") if isinstance(data, dict) else None
    return error[:40] if isinstance(error, str) else "no error code"


class CoinifyClient(ProviderClient):
    key: ClassVar[str] = "coinify"
    display_name: ClassVar[str] = "Coinify"
    flow: ClassVar[Literal["redirect", "form"]] = "form"
    platforms: ClassVar[Sequence[str]] = ("coinify",)
    documented_base_urls: ClassVar[Mapping[str, str]] = {"production": "https://app-api.coinify.com"}
    # [assumed] A partner has an id (sent as partnerId) and no secret of its own.
    partner_credentials: ClassVar[tuple[str, ...]] = ("client_id",)
    # The sign-in grant, then /me.
    connect_calls: ClassVar[int] = 2

    # --- form ---
    def credential_fields(self) -> Sequence[FormField]:
        return (
            FormField(name="email", label="Coinify email", required=False, input_type="email", group="password"),
            FormField(
                name="password",
                label="Coinify password",
                secret=True,
                required=False,
                input_type="password",
                help_text="Used once to sign in and never stored.",
                group="password",
            ),
            FormField(
                name="offline_token",
                label="Offline token",
                secret=True,
                required=False,
                input_type="password",
                help_text="From the client's Coinify account settings. It does not expire.",
                help_text_for_client="From your Coinify account settings. It does not expire.",
                group="offline",
            ),
        )

    def credential_form(self) -> CredentialForm:
        """Email + password, or an offline token: which gives what, and which we recommend."""
        return CredentialForm(
            fields=self.credential_fields(),
            groups={"password": "Email and password", "offline": "Or an offline token (recommended)"},
            note=(
                "Email and password give a sign-in that renews itself for 24 hours at a time: if renewals stop "
                "for a day (Coinify unreachable, say), the client has to sign in again. An offline token does "
                "not expire, so we recommend it."
            ),
            note_for_client=(
                "Your email and password give a sign-in that renews itself for 24 hours at a time: if it cannot "
                "renew for a day, you will be asked to sign in again. An offline token from your Coinify account "
                "settings does not expire, so we recommend it."
            ),
            empty_message=CHOOSE_ONE,
        )

    def clean_credential_fields(self, fields: Mapping[str, str]) -> dict[str, str]:
        """Either ``email`` + ``password``, or ``offline_token``; never both, never half a pair."""
        email = (fields.get("email") or "").strip()
        password = fields.get("password") or ""
        offline = (fields.get("offline_token") or "").strip()
        if offline and (email or password):
            raise InvalidCredentialFields("Enter either the email and password, or an offline token, not both.")
        if offline:
            return {"offline_token": offline}
        if email and not password:
            raise InvalidCredentialFields("Enter the password too.", field="password")
        if password and not email:
            raise InvalidCredentialFields("Enter the email too.", field="email")
        if not email:
            raise InvalidCredentialFields(CHOOSE_ONE)
        return {"email": email, "password": password}

    def connect_with_credentials(self, *, fields: Mapping[str, str], platform: str) -> Grant:
        """Sign in (password or offline grant), then read ``/me`` for the user id and accounts."""
        cleaned = self.clean_credential_fields(fields)
        offline: IssuedCredential | None = None
        if "offline_token" in cleaned:
            offline = self.issue("offline", cleaned["offline_token"])
            access, refresh = self._grant(
                {"grant_type": GRANT_OFFLINE_TOKEN, "offline_token": cleaned["offline_token"]}
            )
        else:
            # [assumed] The partner id is the ProviderApp's client_id.
            access, refresh = self._grant(
                {
                    "grant_type": GRANT_PASSWORD,
                    "email": cleaned["email"],
                    "partnerId": self.app.client_id,
                    "password": cleaned["password"],
                }
            )
        try:
            user_id, accounts = self._me(access.value)
        except ProviderError:
            # Do not leave a live sign-in behind that nobody will ever use.
            self._revoke_refresh_token(refresh.value, quiet=True)
            raise
        credentials = [access, refresh] + ([offline] if offline else [])
        return Grant(credentials=credentials, external_account_id=user_id, accounts=accounts)

    # --- grants ---
    def _grant(self, body: Mapping[str, Any]) -> tuple[IssuedCredential, IssuedCredential]:
        """POST /auth (never retried: a refresh token is single use) → (access, refresh)."""
        grant = str(body["grant_type"])
        reply = self.http.request("POST", self.api_url(AUTH_PATH), endpoint=f"auth, {grant} grant", json=dict(body))
        if reply.status == 200:
            data = reply.json_object()
            token_type = data.text("token_type")
            if token_type.lower() != "bearer":
                raise data.invalid("token_type", "is not bearer")
            access = self.issue(
                "access",
                data.text("access_token"),
                lifetime=timedelta(seconds=data.integer("expires_in", minimum=1)),
            )
            refresh = self.issue("refresh", data.text("refresh_token"), lifetime=REFRESH_TOKEN_LIFETIME)
            return access, refresh
        if reply.status in (400, 401):
            raise self._oauth_error(reply)
        raise reply.unexpected()

    def _oauth_error(self, reply: HttpReply) -> ProviderError:
        """An OAuth2 error response as a ProviderError (the description never leaves unmapped)."""
        data = reply.json_object()
        error = data.text("error")
        if error == "invalid_grant":
            reason, words = invalid_grant_reason(data.optional_text("error_description"))
            return ProviderError.reauth(
                reason, f"Coinify: {words}. Ask the client to reconnect.", status_code=reply.status
            )
        if error in ("invalid_client", "unauthorized_client"):
            return ProviderError.app_credentials(
                f"Coinify rejected the portal's partner credentials ({error}).", status_code=reply.status
            )
        # invalid_request / unsupported_grant_type: a request the portal built wrongly.
        return ProviderError.transient(f"Coinify refused the request ({error[:40]}).", status_code=reply.status)

    # --- lifecycle ---
    def renewal_due_at(self, connection: ConnectionState) -> datetime | None:
        """The earlier of: the access token's renewal point, and (without an offline token) the refresh token's."""
        offline = self.credential(connection, "offline")
        refresh = self.credential(connection, "refresh")
        if offline is None and refresh is None:
            return None
        access = self.credential(connection, "access")
        due: list[datetime] = []
        if access is None:
            due.append(self.now())
        else:
            access_due = renew_at(access, ACCESS_TOKEN_MIN_MARGIN)
            if access_due is not None:
                due.append(access_due)
        if offline is None and refresh is not None:
            refresh_due = renew_at(refresh, REFRESH_TOKEN_MIN_MARGIN)
            if refresh_due is not None:
                due.append(refresh_due)
        return min(due) if due else None

    def reconnect_deadline(self, connection: ConnectionState) -> datetime | None:
        """Without an offline token, the refresh token's end of life."""
        if self.credential(connection, "offline") is not None:
            return None
        refresh = self.credential(connection, "refresh")
        return refresh.expires_at if refresh is not None else None

    def deadline_rolls(self, connection: ConnectionState) -> bool:
        """The refresh token's end of life moves 24 hours on at every renewal."""
        return self.reconnect_deadline(connection) is not None

    def renew(self, *, connection: ConnectionState) -> Sequence[IssuedCredential]:
        """A new access token AND a new refresh token. Store both before anything else happens.

        Uses the offline token when there is one (it does not rotate), else the
        refresh token. ``invalid_grant`` is ``reauth_required`` and never retried.
        """
        offline = self.credential(connection, "offline")
        if offline is not None:
            access, refresh = self._grant({"grant_type": GRANT_OFFLINE_TOKEN, "offline_token": offline.value})
            return [access, refresh]
        chain = self.credential(connection, "refresh")
        if chain is None:
            raise ProviderError.reauth(
                FailureReason.EXPIRED,
                "Coinify: there is no sign-in left to renew. Ask the client to reconnect.",
                nothing_sent=True,
            )
        if self.is_lapsed(chain):
            raise ProviderError.reauth(
                FailureReason.EXPIRED,
                "Coinify: the sign-in expired (24 hours). Ask the client to reconnect.",
                nothing_sent=True,
            )
        access, new_refresh = self._grant({"grant_type": GRANT_REFRESH_TOKEN, "refresh_token": chain.value})
        return [access, new_refresh]

    def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
        """GET /me. 401 (or no live access token) → ``access_rejected``; 403 → ``revoked`` (deactivated)."""
        access = self.credential(connection, "access")
        if access is None or self.is_lapsed(access):
            raise ProviderError.access_token_rejected(
                "Coinify: the access token has lapsed; renew it first.", nothing_sent=True
            )
        _user_id, accounts = self._me(access.value)
        return accounts

    def _me(self, access_token: str) -> tuple[str, list[AccountData]]:
        reply = self.http.request("GET", self.api_url(ME_PATH), endpoint="me", headers=bearer(access_token))
        if reply.status == 401:
            raise ProviderError.access_token_rejected("Coinify did not accept the access token.", status_code=401)
        data = reply.json_object_unless_revoked(
            "Coinify: the client's account is deactivated. Ask the client to reconnect."
        )
        user_id = data.identifier("id")
        accounts = [AccountData.from_reply(item) for item in data.objects("accounts")]
        return user_id, accounts

    def revoke(self, *, connection: ConnectionState) -> None:
        """POST /auth/revoke with the refresh token (RFC 7009: 200/204 done; 503 → transient with ``retry_after``).

        A 400 (an error the provider will not change its mind about) counts as
        done and is logged by its error code. The offline token has no revoke
        endpoint in the docs and is simply forgotten.
        """
        refresh = self.credential(connection, "refresh")
        if refresh is None:
            return
        self._revoke_refresh_token(refresh.value, quiet=False)

    def _revoke_refresh_token(self, token: str, *, quiet: bool) -> None:
        try:
            reply = self.http.request(
                "POST",
                self.api_url(REVOKE_PATH),
                endpoint="revoke",
                json={"token_type_hint": REVOKE_TOKEN_TYPE_HINT, "token": token},
            )
            if reply.status in (200, 204):
                return
            if reply.status == 400:
                logger.warning("Coinify revoke answered 400 (%s); treating the token as gone.", _error_code(reply))
                return
            raise reply.unexpected()
        except ProviderError:
            if quiet:
                return
            raise
