"""The interface every provider client implements, and the plain data it speaks in.

Contract
--------
A provider client speaks HTTP to one provider for one :class:`AppConfig` and
returns plain dataclasses. It never touches the ORM: services and the
lifecycle turn its results into rows, and decide what a failure means for a
connection's status.

Every failure leaves a client as a :class:`~.errors.ProviderError` with one of
three kinds (:mod:`.errors`; docs/architecture.md, "One status vocabulary"):

* ``transient``: timeouts, connection errors, 5xx, 429, redirects, malformed or
  unexpected replies. Retried later with backoff; never flags a connection.
* ``reauth_required`` with a :class:`~.errors.FailureReason` (``expired``,
  ``revoked``, ``credentials_invalid``): only the client can fix it. A 401 is
  reported as permanent only after a freshly obtained token also got a 401
  (see "access_rejected" below).
* ``app_credentials_invalid``: the provider rejected the portal's own client
  id/secret (or the ProviderApp is misconfigured). Flags the ProviderApp, never
  the clients' connections.

Plus :class:`~.errors.AuthorizationDenied` when a user declined (or the
provider reported an error) in an authorization flow: an outcome, not a fault;
and :class:`~.errors.InvalidCredentialFields` (a ``ValueError``) when typed
credentials are incomplete before any provider is asked.

The access_rejected mechanism (one mechanism for every provider)
----------------------------------------------------------------
When a provider refuses a connection's *access token* (HTTP 401 on a probe),
``probe`` raises ``ProviderError(kind=reauth_required, reason=expired,
access_rejected=True)``. It does the same, without any HTTP call, when the
stored access token is missing or already past its ``expires_at``. The
lifecycle then:

1. calls ``renew`` (which may itself raise a permanent error: that one stands),
2. stores the returned credentials before anything else,
3. probes once more; a second ``access_rejected`` error with the fresh token is
   permanent (``needs_reconnect``, reason ``expired``).

Clients never hide a renewal inside ``probe``: a renewal returns rotating
secrets that must be stored first, and only ``renew`` returns credentials.
Turnqey's app token is the exception that proves the rule: it belongs to the
ProviderApp, lives in the :class:`AppTokenCache`, and the client re-fetches it
once by itself (a second 401 is ``app_credentials_invalid``, never a client's
problem).

Operations (keyword-only, except the connection of the two deadline queries):

* ``start_authorization`` → :class:`AuthorizationStart` (redirect flows, whose
  callback may carry only the client's ``callback_parameters``);
* ``complete_authorization`` (callback parameters) or ``connect_with_credentials``
  (form fields, see ``credential_fields`` and ``clean_credential_fields``)
  → :class:`Grant`;
* ``renewal_due_at(connection)`` → when ``renew`` should next run (``None``:
  never). The lifecycle schedules renewals from it, with its own jitter: no
  other "renewal due" rule exists;
* ``reconnect_deadline(connection)`` → the hard limit after which only the
  client can restore access (Coinify's refresh token without an offline
  token), or ``None``;
* ``renew`` → new :class:`IssuedCredential` list, to be stored before anything
  else happens (rotating refresh tokens);
* ``probe`` → list of :class:`AccountData` (balances are ``Decimal``);
* ``revoke`` → ``None`` when done or nothing to do; raises a ``transient``
  :class:`~.errors.ProviderError` when the provider could not confirm (the
  caller decides whether to retry or to forget locally anyway);
* ``app_token`` → the cached app token, renewed ahead of expiry, where the
  provider has one.

HTTP
----
Every request goes through :class:`~.http.ProviderHttp` (``client.http``,
:mod:`.http`), which owns timeouts, retries, redirects and status mapping.
Replies are read through :class:`~.replies.JsonObject` (:mod:`.replies`),
whose accessors turn an HTML page, truncated JSON, or a missing or mistyped
field into a ``transient`` error naming the provider, the endpoint and the
field, never the body.

Secrets never appear in a message, a ``repr`` or a log line written here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar, Literal, Protocol

from ..wording.names import source_name
from .endpoints import host_entry, redirect_refusal, url_refusal
from .errors import InvalidCredentialFields, ProviderError
from .http import ProviderHttp
from .replies import JsonObject

# --- Plain data -----------------------------------------------------------------


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

    @classmethod
    def from_reply(cls, item: JsonObject, *, status: str = "active") -> AccountData:
        """An account as the providers' replies spell it: ``id``, ``name`` (may be empty), ``currency``, ``balance``."""
        return cls(
            external_id=item.identifier("id"),
            name=item.text("name", allow_empty=True),
            currency=item.text("currency"),
            balance=item.decimal("balance"),
            status=status,
        )


@dataclass(frozen=True)
class ConnectionState:
    """What a client needs of a Connection row to renew, probe or revoke it."""

    platform: str
    external_account_id: str = ""
    credentials: Mapping[str, IssuedCredential] = field(default_factory=dict, repr=False)
    # Provider-side grouping and identity: Turnqey {"collection", "identity"}.
    grouping: Mapping[str, str] = field(default_factory=dict)
    # The client's partner-side identity (a UUID string), the one every
    # authorization flow of this client was started with.
    identity: str = ""
    # Provider-side grouping the household shares (Turnqey {"collection": ...}),
    # for a provider to fall back on where the connection's own lacks it.
    household_grouping: Mapping[str, str] = field(default_factory=dict)


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
    # None when the accounts could not be read yet (the next probe fills them).
    accounts: Sequence[AccountData] | None = None
    # True when these credentials supersede every kind held before (kinds not
    # listed are deleted); False keeps kinds the grant does not mention.
    replace_credentials: bool = False


@dataclass(frozen=True)
class FormField:
    """One input of a credential form (Coinify, Bloquo)."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    help_text: str = ""  # for the adviser, who types on the client's behalf
    input_type: str = "text"  # text | email | password
    # Fields of one group go together (Coinify's email + password); the form
    # asks for one group. Empty: a field of its own.
    group: str = ""
    # The same help spoken to the client, on the pages their link opens.
    help_text_for_client: str = ""


@dataclass(frozen=True)
class CredentialForm:
    """How a provider's credential form is laid out and explained, for the adviser and for the client."""

    fields: Sequence[FormField]
    # Group key -> its heading ("Sign in with email and password").
    groups: Mapping[str, str] = field(default_factory=dict)
    # Shown before the fields: what each choice gives, and which to prefer.
    note: str = ""
    note_for_client: str = ""
    # What an empty submit is told.
    empty_message: str = "Fill in the credentials."


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


# --- Time and renewal deadlines ---------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def renewal_margin(lifetime: timedelta, minimum: timedelta) -> timedelta:
    """How long before expiry a token is renewed: 10 % of its lifetime, at least ``minimum``."""
    return max(minimum, lifetime / 10)


def renew_at(credential: IssuedCredential, minimum_margin: timedelta) -> datetime | None:
    """When ``credential`` should be replaced (``None``: it never expires)."""
    if credential.expires_at is None:
        return None
    lifetime = max(credential.expires_at - credential.issued_at, timedelta(0))
    return credential.expires_at - renewal_margin(lifetime, minimum_margin)


# --- The client base class ---------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class ProviderClient:
    """Base class of the four provider clients. See the module docstring for the contract."""

    key: ClassVar[str]
    display_name: ClassVar[str]
    # "redirect": the browser goes to the provider (Turnqey, Dapi);
    # "form": the adviser or client types credentials into our form (Coinify, Bloquo).
    flow: ClassVar[Literal["redirect", "form"]]
    # Platforms offered in the connect form for this provider.
    platforms: ClassVar[Sequence[str]] = ()
    # Base URLs the provider documents, by environment: a hint for admins, and
    # the hosts its apps may call unless the deployment lists others
    # (endpoints.allowed_hosts, PROVIDER_HOSTS_<PROVIDER>_<ENVIRONMENT>).
    documented_base_urls: ClassVar[Mapping[str, str]] = {}
    # How long the provider's authorization result stays exchangeable (Dapi's
    # access code); None when the callback carries nothing that lapses.
    authorization_code_lifetime: ClassVar[timedelta | None] = None
    # The query parameters the provider's callback may carry; the portal
    # refuses any other before the callback is handled. Empty: no callback.
    callback_parameters: ClassVar[frozenset[str]] = frozenset()
    # Which ProviderApp credentials the provider issues to the partner itself
    # ("client_id", "client_secret"); empty when every credential belongs to a
    # connection (Bloquo's key pairs).
    partner_credentials: ClassVar[tuple[str, ...]] = ()
    # The requests a connect sends (``complete_authorization`` or
    # ``connect_with_credentials``) on its usual path. The portal takes that
    # many tokens of the app's rate limit before it starts, so a connect never
    # stops half-way for want of one (a code spent, and no grant to show).
    connect_calls: ClassVar[int] = 1

    def __init__(
        self,
        app: AppConfig,
        *,
        app_token_cache: AppTokenCache | None = None,
        http: ProviderHttp | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.app = app
        self.app_token_cache = app_token_cache or MemoryAppTokenCache()
        self.http = http or ProviderHttp(self.display_name, connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._clock = clock or utcnow

    def __repr__(self) -> str:
        return f"{type(self).__name__}(app={self.app!r})"

    @classmethod
    def documented_hosts(cls, environment: str) -> list[str]:
        """The host (``host`` or ``host:port``) of the base URL the provider documents for ``environment``, if any."""
        entry = host_entry(cls.documented_base_urls.get(environment, ""))
        return [entry] if entry else []

    # --- helpers for subclasses ---
    def now(self) -> datetime:
        return self._clock()

    def api_url(self, path: str) -> str:
        """``base_url`` + a path, once the base URL has passed :func:`~.endpoints.url_refusal`.

        Every call a client makes is built here, so this is where a URL the
        rule refuses (a host of someone else's, an internal address, plain
        http in production) stops the call before anything is sent: an
        ``app_credentials_invalid`` error naming the problem.
        """
        base = self.app.base_url.strip().rstrip("/")
        if not base:
            raise ProviderError.app_credentials(f"{self.display_name}: no API base URL is configured for this app.")
        self._refuse_unless_allowed(base, what="API base URL")
        return base + path

    def browser_url(self, path: str) -> str:
        """``connect_url`` (or ``base_url``) + a path, for redirect flows; held to the same rule as ``api_url``.

        The browser goes there carrying the authorization ``state``.
        """
        base = (self.app.connect_url or self.app.base_url).strip().rstrip("/")
        if not base:
            raise ProviderError.app_credentials(f"{self.display_name}: no base URL is configured for this app.")
        self._refuse_unless_allowed(base, what="browser URL" if self.app.connect_url else "API base URL")
        return base + path

    def portal_callback(self, redirect_uri: str) -> str:
        """``redirect_uri`` for the provider to send the browser back to, once it passes
        :func:`~.endpoints.redirect_refusal`: the portal's own callback for this provider.

        Held here as well as on save, so an app row written past validation
        still cannot send a client's authorization anywhere else.
        """
        refusal = redirect_refusal(redirect_uri, provider=self.key)
        if refusal is not None:
            raise ProviderError.app_credentials(
                f"{self.display_name}: nothing was sent, because the app's redirect URI {refusal}. "
                "Correct it in the admin."
            )
        return redirect_uri.strip()

    def _refuse_unless_allowed(self, base: str, *, what: str) -> None:
        refusal = url_refusal(base, provider=self.key, environment=self.app.environment)
        if refusal is not None:
            raise ProviderError.app_credentials(
                f"{self.display_name}: nothing was sent, because the app's {what} {refusal}. Correct it in the admin."
            )

    def source(self, platform: str) -> str:
        """How this provider's messages name a source: ``wording.source_name``, as every page and event does."""
        return source_name(provider=self.key, platform=platform)

    def issue(self, kind: str, value: str, *, lifetime: timedelta | None = None) -> IssuedCredential:
        issued_at = self.now()
        return IssuedCredential(
            kind=kind, value=value, issued_at=issued_at, expires_at=issued_at + lifetime if lifetime else None
        )

    @staticmethod
    def credential(connection: ConnectionState, kind: str) -> IssuedCredential | None:
        found = connection.credentials.get(kind)
        return found if found is not None and found.value else None

    def is_lapsed(self, credential: IssuedCredential | None) -> bool:
        return credential is None or (credential.expires_at is not None and credential.expires_at <= self.now())

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

    def credential_form(self) -> CredentialForm:
        """The credential form with its layout and words (providers with groups or advice override it)."""
        return CredentialForm(fields=self.credential_fields())

    def clean_credential_fields(self, fields: Mapping[str, str]) -> dict[str, str]:
        """The typed values this provider uses, stripped; :class:`InvalidCredentialFields` if incomplete.

        Forms may call this to show field errors before anything is sent;
        ``connect_with_credentials`` calls it too.
        """
        cleaned: dict[str, str] = {}
        for spec in self.credential_fields():
            value = (fields.get(spec.name) or "").strip()
            if spec.required and not value:
                raise InvalidCredentialFields(f"{spec.label} is required.", field=spec.name)
            if value:
                cleaned[spec.name] = value
        return cleaned

    def connect_with_credentials(self, *, fields: Mapping[str, str], platform: str) -> Grant:
        """Exchange typed credentials for a Grant. A password is used once and dropped."""
        raise NotImplementedError(f"{self.key} has no credential form")

    # --- lifecycle ---
    def renewal_due_at(self, connection: ConnectionState) -> datetime | None:
        """When ``renew`` should next run; ``None`` when there is nothing to renew."""
        return None

    def reconnect_deadline(self, connection: ConnectionState) -> datetime | None:
        """After this moment only the client can restore access (``None``: no such limit)."""
        return None

    def deadline_rolls(self, connection: ConnectionState) -> bool:
        """True when ``reconnect_deadline`` moves forward by itself at every renewal (a rotating
        refresh token's end of life): it needs the client only if renewals stop."""
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
