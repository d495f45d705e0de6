"""The interface every provider client implements, and what they share.

Contract
--------
A provider client speaks HTTP to one provider for one :class:`AppConfig` and
returns plain dataclasses. It never touches the ORM: services and the
lifecycle turn its results into rows, and decide what a failure means for a
connection's status.

Every failure leaves a client as a :class:`ProviderError` with one of three
kinds (DESIGN.md, "One status vocabulary"):

* ``transient``: timeouts, connection errors, 5xx, 429, redirects, malformed or
  unexpected replies. Retried later with backoff; never flags a connection.
* ``reauth_required`` with a :class:`FailureReason` (``expired``, ``revoked``,
  ``credentials_invalid``): only the client can fix it. A 401 is reported as
  permanent only after a freshly obtained token also got a 401 (see
  "access_rejected" below).
* ``app_credentials_invalid``: the provider rejected the portal's own client
  id/secret (or the ProviderApp is misconfigured). Flags the ProviderApp, never
  the clients' connections.

Plus :class:`AuthorizationDenied` when a user declined (or the provider
reported an error) in an authorization flow: an outcome, not a fault; and
:class:`InvalidCredentialFields` (a ``ValueError``) when typed credentials are
incomplete before any provider is asked.

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

Operations (all keyword-only except ``needs_renewal``'s connection):

* ``start_authorization`` → :class:`AuthorizationStart` (redirect flows);
* ``complete_authorization`` (callback parameters) or ``connect_with_credentials``
  (form fields, see ``credential_fields`` and ``clean_credential_fields``)
  → :class:`Grant`;
* ``renewal_due_at`` → when ``renew`` should next run (``None``: never);
  ``needs_renewal(connection, at=None)`` is ``renewal_due_at <= at``;
* ``reconnect_deadline`` → the hard limit after which only the client can
  restore access (Coinify's refresh token without an offline token), or ``None``;
* ``renew`` → new :class:`IssuedCredential` list, to be stored before anything
  else happens (rotating refresh tokens);
* ``probe`` → list of :class:`AccountData` (balances are ``Decimal``);
* ``revoke`` → ``None`` when done or nothing to do; raises a ``transient``
  :class:`ProviderError` when the provider could not confirm (the caller
  decides whether to retry or to forget locally anyway);
* ``app_token`` → the cached app token, renewed ahead of expiry, where the
  provider has one.

HTTP
----
Every request goes through :class:`ProviderHttp` (``client.http``): one pooled
``requests.Session`` with urllib3 retries for idempotent methods only (GET,
PUT, DELETE, HEAD on 502/503/504, honouring a short ``Retry-After``), connect
and read timeouts from settings, no redirects followed, and status mapping
(connection errors, timeouts, 3xx, 429 and 5xx become ``transient`` errors).
Replies are read through :class:`JsonObject`, whose accessors turn an HTML
page, truncated JSON, or a missing or mistyped field into a ``transient``
error naming the provider, the endpoint and the field, never the body.

Secrets never appear in a message, a ``repr`` or a log line written here.
"""

from __future__ import annotations

import enum
import http.cookiejar
import json
import logging
import math
import os
import re
import threading
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal, Protocol

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from connections.logging import redact

logger = logging.getLogger("connections.providers")


# --- Errors -------------------------------------------------------------------


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
    ``access_rejected`` is true when the provider refused the connection's
    access token (or it is missing or lapsed locally); it always comes with
    ``reauth_required``/``expired`` and means "renew, store, probe once more;
    only a second rejection is permanent" (see the module docstring).
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
        access_rejected: bool = False,
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
        self.access_rejected = access_rejected

    @classmethod
    def transient(cls, message: str, **kwargs: object) -> ProviderError:
        return cls(ErrorKind.TRANSIENT, message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def reauth(cls, reason: FailureReason, message: str, **kwargs: object) -> ProviderError:
        return cls(ErrorKind.REAUTH_REQUIRED, message, reason=reason, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def app_credentials(cls, message: str, **kwargs: object) -> ProviderError:
        return cls(ErrorKind.APP_CREDENTIALS_INVALID, message, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def access_token_rejected(cls, message: str, **kwargs: object) -> ProviderError:
        """The provider refused the access token: renew, store, probe once more."""
        return cls(
            ErrorKind.REAUTH_REQUIRED,
            message,
            reason=FailureReason.EXPIRED,
            access_rejected=True,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def is_permanent(self) -> bool:
        return self.kind == ErrorKind.REAUTH_REQUIRED

    def __repr__(self) -> str:
        extras = ""
        if self.access_rejected:
            extras += ", access_rejected=True"
        if self.outcome_unknown:
            extras += ", outcome_unknown=True"
        if self.retry_after is not None:
            extras += f", retry_after={self.retry_after:g}"
        return f"ProviderError(kind={self.kind!s}, reason={self.reason!s}, status={self.status_code}{extras})"


class AuthorizationDenied(Exception):
    """The user declined, or the provider reported an error, during authorization.

    ``outcome`` is ``"denied"`` or ``"error"``; ``message`` is plain words.
    """

    def __init__(self, outcome: Literal["denied", "error"], message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


class InvalidCredentialFields(ValueError):
    """Typed credentials are incomplete or contradictory; nothing was sent.

    ``field`` names the form field to attach the message to, or ``None`` for a
    form-wide error. The message is plain words and never echoes a value.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


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


@dataclass(frozen=True)
class ConnectionState:
    """What a client needs of a Connection row to renew, probe or revoke it."""

    platform: str
    external_account_id: str = ""
    credentials: Mapping[str, IssuedCredential] = field(default_factory=dict, repr=False)
    # Provider-side grouping and identity: Turnqey {"collection", "identity"}.
    grouping: Mapping[str, str] = field(default_factory=dict)
    # The client's partner-side identity, and the grouping their household
    # shares (Turnqey {"collection"}), when the caller has them at hand.
    identity: str = ""
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


# --- Parsing helpers ----------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent or garbage."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    return max((when - (now or utcnow())).total_seconds(), 0.0)


def parse_decimal(value: object) -> Decimal | None:
    """A finite ``Decimal`` from a JSON string such as ``"0.50000000"``; ``None`` for anything else.

    Numbers are refused on purpose: the providers send amounts as strings, and a
    JSON float has already lost precision by the time it reaches us.
    """
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def parse_timestamp(value: object) -> datetime | None:
    """An aware datetime from ISO 8601 text with an offset; ``None`` for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Some providers send seven fractional digits (.NET ticks); Python 3.11 takes six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def clean_provider_text(value: object, *, limit: int = 200) -> str:
    """Provider-supplied words made safe to show: one line, short, secret-shaped parts masked."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return redact(text)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class JsonObject:
    """Typed, validating access to one JSON object of a provider's reply.

    Every accessor raises a ``transient`` :class:`ProviderError` naming the
    provider, endpoint and field path (``result.accounts[0].balance``) when the
    field is missing or of the wrong type. Values never reach a message.
    """

    __slots__ = ("_data", "path", "where")

    def __init__(self, data: Mapping[str, Any], *, where: str, path: str = "") -> None:
        self._data = data
        self.where = where
        self.path = path

    def __repr__(self) -> str:  # the data may hold secrets
        return f"JsonObject(where={self.where!r}, path={self.path!r})"

    def _label(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def missing(self, name: str) -> ProviderError:
        return ProviderError.transient(f"{self.where}: the reply is missing the field '{self._label(name)}'.")

    def mistyped(self, name: str, expected: str, value: object) -> ProviderError:
        return ProviderError.transient(
            f"{self.where}: the field '{self._label(name)}' has the wrong type "
            f"(expected {expected}, got {_json_type(value)})."
        )

    def invalid(self, name: str, problem: str) -> ProviderError:
        return ProviderError.transient(f"{self.where}: the field '{self._label(name)}' {problem}.")

    def has(self, name: str) -> bool:
        return name in self._data and self._data[name] is not None

    def raw(self, name: str, default: Any = None) -> Any:
        """The value as parsed, unvalidated (for optional, loosely shaped parts)."""
        return self._data.get(name, default)

    def _get(self, name: str) -> Any:
        if name not in self._data or self._data[name] is None:
            raise self.missing(name)
        return self._data[name]

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self.mistyped(name, "a string", value)
        if not allow_empty and not value.strip():
            raise self.invalid(name, "is empty")
        return value

    def optional_text(self, name: str) -> str | None:
        if not self.has(name):
            return None
        value = self._data[name]
        if not isinstance(value, str):
            raise self.mistyped(name, "a string", value)
        return value

    def identifier(self, name: str) -> str:
        """An id sent as a string or an integer (Coinify's user id is a number)."""
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.mistyped(name, "a string or integer id", value)
        text = str(value)
        if not text.strip():
            raise self.invalid(name, "is empty")
        return text

    def integer(self, name: str, *, minimum: int | None = None) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.mistyped(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise self.invalid(name, f"is below {minimum}")
        return value

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self.mistyped(name, "a boolean", value)
        return value

    def decimal(self, name: str) -> Decimal:
        value = self._get(name)
        number = parse_decimal(value)
        if number is None:
            if isinstance(value, str):
                raise self.invalid(name, "is not a decimal amount")
            raise self.mistyped(name, "a decimal string", value)
        return number

    def obj(self, name: str) -> JsonObject:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self.mistyped(name, "an object", value)
        return JsonObject(value, where=self.where, path=self._label(name))

    def objects(self, name: str) -> list[JsonObject]:
        """A list whose every item is an object."""
        value = self._get(name)
        if not isinstance(value, list):
            raise self.mistyped(name, "an array", value)
        items: list[JsonObject] = []
        for index, item in enumerate(value):
            label = f"{name}[{index}]"
            if not isinstance(item, dict):
                raise self.mistyped(label, "an object", item)
            items.append(JsonObject(item, where=self.where, path=self._label(label)))
        return items


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


# --- HTTP -----------------------------------------------------------------------------

# Only these are retried automatically: repeating them cannot do anything twice.
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD"})
# Gateway and availability errors are worth one or two quick retries.
RETRY_STATUSES = frozenset({502, 503, 504})
# A Retry-After longer than this is not waited out inside a request (a worker
# thread would sit idle): the reply goes back as a transient error carrying
# the hint, and the lifecycle schedules the retry.
RETRY_AFTER_CAP_SECONDS = 3.0
# Enough connections for a threaded worker talking to one provider host.
POOL_SIZE = 32
DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
USER_AGENT = "adviser-connections-portal/1.0"


class ProviderRetry(Retry):
    """urllib3 retries with two changes: a capped ``Retry-After`` and tolerant header parsing."""

    # Only 503 is retried on the strength of a Retry-After; a 429 goes back to
    # the caller so the rate limiter sees it.
    RETRY_AFTER_STATUS_CODES = frozenset({503})
    retry_after_cap: float = RETRY_AFTER_CAP_SECONDS

    def new(self, **kw: Any) -> ProviderRetry:
        retry = super().new(**kw)
        retry.retry_after_cap = self.retry_after_cap
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None  # a garbage header means "no hint", not a crash

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> ProviderRetry:
        if response is not None and error is None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.retry_after_cap:
                # Give up now: with raise_on_status off, the caller gets this reply.
                raise urllib3.exceptions.MaxRetryError(
                    _pool, url or "", urllib3.exceptions.ResponseError("Retry-After beyond the cap")
                )
        return super().increment(method, url, response, error, _pool, _stacktrace)  # type: ignore[return-value]


def make_retry(
    *,
    status_retries: int = 2,
    backoff_factor: float = 0.25,
    backoff_max: float = 2.0,
    retry_after_cap: float = RETRY_AFTER_CAP_SECONDS,
) -> ProviderRetry:
    """The retry policy every provider shares."""
    retry = ProviderRetry(
        total=status_retries + 1,
        # A failed connect never reached the provider, so one retry is safe for
        # any method. A read error may have, so it is never retried here.
        connect=1,
        read=False,
        other=0,
        redirect=False,
        status=status_retries,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    retry.retry_after_cap = retry_after_cap
    return retry


def make_session(*, retry: Retry | None = None, pool_size: int = POOL_SIZE) -> requests.Session:
    """A session for provider calls: pooled, retrying idempotent calls, keeping no cookies."""
    session = requests.Session()
    # The session is shared by every connection of every client: a cookie one
    # provider set for one user must never ride along with another user's call.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    adapter = HTTPAdapter(
        max_retries=retry if retry is not None else make_retry(),
        pool_connections=pool_size,
        pool_maxsize=pool_size,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    _environment_apply(session)
    return session


def _environment_apply(session: requests.Session) -> None:
    """Read the environment's network settings once instead of on every call.

    By default requests looks at the proxy variables, ``~/.netrc`` and the CA
    bundle variables on every request: file system calls on the hot path, and
    a ``.netrc`` entry would even attach a stored password to a provider call.
    Without a proxy configured, the session stops trusting the environment and
    keeps only a CA bundle named there. With a proxy, it keeps the default so
    ``NO_PROXY`` still applies per host.
    """
    proxies = {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme != "no"}
    if proxies:
        return
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


_shared_session: requests.Session | None = None
_shared_session_pid: int | None = None
_shared_session_lock = threading.Lock()


def shared_session() -> requests.Session:
    """The process-wide pooled session, created on first use (and again after a fork).

    A forked worker must not share sockets with its parent, hence the pid check.
    """
    global _shared_session, _shared_session_pid
    pid = os.getpid()
    with _shared_session_lock:
        if _shared_session is None or _shared_session_pid != pid:
            _shared_session = make_session()
            _shared_session_pid = pid
        return _shared_session


def _setting(name: str, default: float) -> float:
    """A timeout from Django settings, read at call time so tests and overrides apply."""
    try:
        from django.conf import settings

        value = getattr(settings, name, default)
    except Exception:  # settings not configured (a script outside Django)
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 and math.isfinite(number) else default


def _failed_before_sending(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the request certainly never reached the provider (refused, DNS, connect timeout)."""
    cause: object = exc.args[0] if exc.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    return isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


@dataclass(frozen=True)
class HttpReply:
    """A reply that got past status mapping: a 2xx, or a 4xx for the provider module to interpret."""

    provider: str
    endpoint: str
    status: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)

    @property
    def where(self) -> str:
        """How messages name this call: ``"Turnqey (accounts by collection)"``."""
        return f"{self.provider} ({self.endpoint})"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The parsed body; a ``transient`` error for anything that is not JSON."""
        if not self.content.strip():
            raise ProviderError.transient(
                f"{self.where}: the reply (HTTP {self.status}) had an empty body.", status_code=self.status
            )
        try:
            return json.loads(self.content.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            looks_html = self.content.lstrip()[:1] == b"<" or "html" in self.headers.get("Content-Type", "").lower()
            what = "an HTML page" if looks_html else "malformed or truncated JSON"
            raise ProviderError.transient(
                f"{self.where}: the reply (HTTP {self.status}) was {what} instead of JSON.", status_code=self.status
            ) from None

    def json_object(self) -> JsonObject:
        """The body as a :class:`JsonObject`; a ``transient`` error unless it is a JSON object."""
        data = self.json()
        if not isinstance(data, dict):
            raise ProviderError.transient(
                f"{self.where}: the reply (HTTP {self.status}) was a JSON {_json_type(data)}, not an object.",
                status_code=self.status,
            )
        return JsonObject(data, where=self.where)

    def unexpected(self, detail: str = "") -> ProviderError:
        """The error for a status the provider module does not expect (to ``raise``)."""
        suffix = f": {detail}" if detail else ""
        return ProviderError.transient(
            f"{self.where}: unexpected reply HTTP {self.status}{suffix}.", status_code=self.status
        )


class ProviderHttp:
    """The shared request helper: timeouts, retries, no redirects, status mapping.

    ``request`` raises a ``transient`` :class:`ProviderError` for connection
    errors and timeouts (``outcome_unknown`` when the request may have been
    received), any 3xx (redirects are never followed), 429 and 5xx (with
    ``retry_after`` from ``Retry-After``). Everything else comes back as an
    :class:`HttpReply` for the provider module to interpret.

    Timeouts come from ``settings.PROVIDER_CONNECT_TIMEOUT`` and
    ``PROVIDER_READ_TIMEOUT`` at call time unless given here.
    """

    def __init__(
        self,
        provider: str,
        *,
        session: requests.Session | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self.provider = provider
        self._session = session
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def __repr__(self) -> str:
        return f"ProviderHttp(provider={self.provider!r})"

    @property
    def session(self) -> requests.Session:
        return self._session if self._session is not None else shared_session()

    def timeouts(self) -> tuple[float, float]:
        connect = self.connect_timeout or _setting("PROVIDER_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
        read = self.read_timeout or _setting("PROVIDER_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
        return connect, read

    def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """Send one request. ``endpoint`` is a short, secret-free label used in messages and logs."""
        where = f"{self.provider} ({endpoint})"
        connect_timeout, read_timeout = self.timeouts()
        try:
            response = self.session.request(
                method,
                url,
                headers=dict(headers or {}),
                json=json,
                params=params,
                timeout=(connect_timeout, read_timeout),
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise ProviderError.transient(
                f"{where}: could not connect within {connect_timeout:g} s.", outcome_unknown=False
            ) from None
        except requests.exceptions.ReadTimeout:
            raise ProviderError.transient(
                f"{where}: no reply within {read_timeout:g} s; the request may have been received.",
                outcome_unknown=True,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            before = _failed_before_sending(exc)
            detail = "could not be reached" if before else "the connection failed before a reply arrived"
            raise ProviderError.transient(f"{where}: {detail}.", outcome_unknown=not before) from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise ProviderError.transient(
                f"{where}: the request failed ({type(exc).__name__}).", outcome_unknown=True
            ) from None

        status = response.status_code
        logger.debug("%s %s -> HTTP %s", where, method, status)
        if 300 <= status < 400:
            raise ProviderError.transient(
                f"{where}: answered with a redirect (HTTP {status}), which is not followed.", status_code=status
            )
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            what = "rate limited the portal" if status == 429 else "had a server error"
            raise ProviderError.transient(
                f"{where}: {what} (HTTP {status}){hint}.", status_code=status, retry_after=retry_after
            )
        return HttpReply(
            provider=self.provider,
            endpoint=endpoint,
            status=status,
            headers=response.headers,
            content=response.content or b"",
        )


# --- The client base class ---------------------------------------------------------------


def platform_label(platform: str) -> str:
    """A source platform as people write it (coinbase → Coinbase)."""
    return platform.replace("_", " ").replace("-", " ").title() if platform else "the source platform"


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
    # Base URLs the provider documents, by environment (a hint for admins).
    documented_base_urls: ClassVar[Mapping[str, str]] = {}
    # How long the provider's authorization result stays exchangeable (Dapi's
    # access code); None when the callback carries nothing that lapses.
    authorization_code_lifetime: ClassVar[timedelta | None] = None
    # Which ProviderApp credentials the provider issues to the partner itself
    # ("client_id", "client_secret"); empty when every credential belongs to a
    # connection (Bloquo's key pairs).
    partner_credentials: ClassVar[tuple[str, ...]] = ()

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

    # --- helpers for subclasses ---
    def now(self) -> datetime:
        return self._clock()

    def api_url(self, path: str) -> str:
        """``base_url`` + a path; an unset base URL is a ProviderApp problem."""
        base = self.app.base_url.strip().rstrip("/")
        if not base:
            raise ProviderError.app_credentials(f"{self.display_name}: no API base URL is configured for this app.")
        return base + path

    def browser_url(self, path: str) -> str:
        """``connect_url`` (or ``base_url``) + a path, for redirect flows."""
        base = (self.app.connect_url or self.app.base_url).strip().rstrip("/")
        if not base:
            raise ProviderError.app_credentials(f"{self.display_name}: no base URL is configured for this app.")
        return base + path

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

    def needs_renewal(self, connection: ConnectionState, *, at: datetime | None = None) -> bool:
        """True when ``renew`` has something to do (a renewable token close to, or past, expiry)."""
        due = self.renewal_due_at(connection)
        return due is not None and due <= (at or self.now())

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
