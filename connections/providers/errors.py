"""The one error taxonomy every provider client reports in (docs/architecture.md, "One status vocabulary").

A client's failure leaves it as a :class:`ProviderError` whose ``kind`` is
``transient``, ``reauth_required`` (with a :class:`FailureReason`) or
``app_credentials_invalid``; what each kind means for a connection is stated
in the contract (``base``'s docstring) and decided by the lifecycle alone.
:class:`AuthorizationDenied` and :class:`InvalidCredentialFields` are outcomes
of a connect, not faults.

Messages are plain words safe to show and log: never a secret.
"""

from __future__ import annotations

import enum
from typing import Literal


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
    only a second rejection is permanent" (see the contract in ``base``).
    ``nothing_sent`` is true when the client decided without asking the
    provider (nothing stored that could be sent, a token past its own expiry).
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
        nothing_sent: bool = False,
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
        self.nothing_sent = nothing_sent

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

    ``outcome`` is ``"denied"`` or ``"error"``; ``message`` is a sentence in
    plain words that starts with the source's name (``ProviderClient.source``),
    so it can be shown as it is.
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
