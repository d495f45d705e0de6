"""The interface every provider client implements, and what they share.

Contract
--------
A provider client speaks HTTP to one provider for one :class:`AppConfig` and
returns plain dataclasses. It never touches the ORM: services and the
lifecycle turn its results into rows, and decide what a failure means for a
connection's status.

Every failure leaves a client as a :class:`ProviderError` with one of three
kinds (DESIGN.md, "One status vocabulary"):

* ``transient``: timeouts, connection errors, 5xx, 429, malformed or unexpected
  replies. Retried later with backoff; never flags a connection.
* ``reauth_required`` with a :class:`FailureReason` (``expired``, ``revoked``,
  ``credentials_invalid``): only the client can fix it. A 401 is reported as
  permanent only after a freshly obtained token also got a 401.
* ``app_credentials_invalid``: the provider rejected the portal's own client
  id/secret. Flags the ProviderApp, never the clients' connections.

Plus :class:`AuthorizationDenied` when a user declined (or the provider
reported an error) in an authorization flow: an outcome, not a fault.

Operations (all keyword-only):

* ``start_authorization`` → :class:`AuthorizationStart` (redirect flows);
* ``complete_authorization`` (callback parameters) or ``connect_with_credentials``
  (form fields) → :class:`Grant`;
* ``renew`` → new :class:`IssuedCredential` list, to be stored before anything
  else happens (rotating refresh tokens);
* ``probe`` → list of :class:`AccountData`;
* ``revoke`` → ``None`` (best effort where the provider allows it);
* ``app_token`` → the cached app token, renewed ahead of expiry, where the
  provider has one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal, Protocol


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"
    REAUTH_REQUIRED = "reauth_required"
    APP_CREDENTIALS_INVALID = "app_credentials_invalid"


class FailureReason(enum.StrEnum):
    EXPIRED = "expired"
    REVOKED = "revoked"
    CREDENTIALS_INVALID = "credentials_invalid"


class ProviderError(Exception):
    """The one error type provider clients raise.

    ``message`` is plain words safe to show and log: it never contains a secret.
    ``retry_after`` (seconds) is the provider's own hint, when it gave one.
    ``outcome_unknown`` is true when the request may have reached the provider
    but no reply came back (a read timeout after sending): a renewal in that
    state is retried once with the same token before anything is decided.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: FailureReason | None = None,
        retry_after: float | None = None,
        status_code: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        if kind == ErrorKind.REAUTH_REQUIRED and reason is None:
            raise ValueError("reauth_required needs a reason")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.reason = reason
        self.retry_after = retry_after
        self.status_code = status_code
        self.outcome_unknown = outcome_unknown

    @classmethod
    def transient(cls, message: str, **kwargs: object) -> ProviderError:
        return cls(ErrorKind.TRANSIENT, message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def reauth(cls, reason: FailureReason, message: str, **kwargs: object) -> ProviderError:
        return cls(ErrorKind.REAUTH_REQUIRED, message, reason=reason, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def app_credentials(cls, message: str, **kwargs: object) -> ProviderError:
        return cls(ErrorKind.APP_CREDENTIALS_INVALID, message, **kwargs)  # type: ignore[arg-type]

    @property
    def is_permanent(self) -> bool:
        return self.kind == ErrorKind.REAUTH_REQUIRED

    def __repr__(self) -> str:
        return f"ProviderError(kind={self.kind!s}, reason={self.reason!s}, status={self.status_code})"


class AuthorizationDenied(Exception):
    """The user declined, or the provider reported an error, during authorization.

    ``outcome`` is ``"denied"`` or ``"error"``; ``message`` is plain words.
    """

    def __init__(self, outcome: Literal["denied", "error"], message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


@dataclass(frozen=True)
class AppConfig:
    """What a client needs of a ProviderApp row (secrets already decrypted)."""

    provider: str
    environment: str  # "sandbox" | "production"
    base_url: str
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    # Browser-facing base URL for redirect flows when it differs from base_url.
    connect_url: str = ""

    def __repr__(self) -> str:  # never print the secret
        return f"AppConfig(provider={self.provider!r}, environment={self.environment!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class IssuedCredential:
    """A secret a provider issued. ``kind`` uses Credential.Kind values."""

    kind: str  # access | refresh | offline | permanent | app | api_key | user_secret
    value: str = field(repr=False)
    issued_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class AccountData:
    external_id: str
    name: str
    currency: str
    balance: Decimal
    # The provider's view of this account: "active", "expired" or "revoked".
    status: str = "active"


@dataclass(frozen=True)
class ConnectionState:
    """What a client needs of a Connection row to renew, probe or revoke it."""

    platform: str
    external_account_id: str = ""
    credentials: Mapping[str, IssuedCredential] = field(default_factory=dict, repr=False)
    # Provider-side grouping and identity: Turnqey {"collection", "identity"}.
    grouping: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthorizationStart:
    """Where to send the browser to start a redirect flow."""

    redirect_url: str
    checksum: str = ""


@dataclass(frozen=True)
class Grant:
    """The result of a completed authorization."""

    credentials: Sequence[IssuedCredential]
    # Must match the stored one on reconnect (same source account).
    external_account_id: str
    # Provider-side grouping to remember (Turnqey {"collection": ...}).
    grouping: Mapping[str, str] = field(default_factory=dict)
    accounts: Sequence[AccountData] | None = None


@dataclass(frozen=True)
class FormField:
    """One input of a credential form (Coinify, Bloquo)."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    help_text: str = ""
    input_type: str = "text"  # text | email | password


class AppTokenCache(Protocol):
    """Where a client keeps its app token between calls (services back it with a row)."""

    def load(self) -> IssuedCredential | None: ...

    def save(self, credential: IssuedCredential) -> None: ...


class MemoryAppTokenCache:
    """An in-process cache, for tests and one-off calls."""

    def __init__(self) -> None:
        self._credential: IssuedCredential | None = None

    def load(self) -> IssuedCredential | None:
        return self._credential

    def save(self, credential: IssuedCredential) -> None:
        self._credential = credential


class ProviderClient:
    """Base class of the four provider clients. See the module docstring for the contract."""

    key: ClassVar[str]
    display_name: ClassVar[str]
    # "redirect": the browser goes to the provider (Turnqey, Dapi);
    # "form": the adviser or client types credentials into our form (Coinify, Bloquo).
    flow: ClassVar[Literal["redirect", "form"]]
    # Platforms offered in the connect form for this provider.
    platforms: ClassVar[Sequence[str]] = ()

    def __init__(self, app: AppConfig, *, app_token_cache: AppTokenCache | None = None) -> None:
        self.app = app
        self.app_token_cache = app_token_cache or MemoryAppTokenCache()

    # --- authorization ---
    def start_authorization(
        self, *, state: str, platform: str, identity: str, grouping: Mapping[str, str], redirect_uri: str
    ) -> AuthorizationStart:
        raise NotImplementedError(f"{self.key} has no redirect flow")

    def complete_authorization(self, *, params: Mapping[str, str], platform: str, identity: str) -> Grant:
        """Turn callback parameters (``state`` already verified) into a Grant."""
        raise NotImplementedError(f"{self.key} has no redirect flow")

    def credential_fields(self) -> Sequence[FormField]:
        raise NotImplementedError(f"{self.key} has no credential form")

    def connect_with_credentials(self, *, fields: Mapping[str, str], platform: str) -> Grant:
        """Exchange typed credentials for a Grant. A password is used once and dropped."""
        raise NotImplementedError(f"{self.key} has no credential form")

    # --- lifecycle ---
    def needs_renewal(self, connection: ConnectionState) -> bool:
        """True when ``renew`` has something to do (there is a renewable token)."""
        return False

    def renew(self, *, connection: ConnectionState) -> Sequence[IssuedCredential]:
        """Obtain fresh credentials. Rotating tokens come back too and must be stored first."""
        return ()

    def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
        raise NotImplementedError

    def revoke(self, *, connection: ConnectionState) -> None:
        """Revoke access at the provider where it allows it; otherwise do nothing."""

    def app_token(self) -> IssuedCredential | None:
        """The app token, from cache or freshly fetched; ``None`` when the provider has none."""
        return None
