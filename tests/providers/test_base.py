"""The contract's shared rules (providers/base.py, providers/errors.py): renewal points, the error type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connections.providers.base import IssuedCredential, renew_at
from connections.providers.errors import ErrorKind, ProviderError


def test_renewal_point_is_ten_percent_of_lifetime_or_the_minimum() -> None:
    issued = datetime(2025, 1, 1, tzinfo=UTC)
    hour = IssuedCredential(kind="access", value="v", issued_at=issued, expires_at=issued + timedelta(hours=1))
    minute = IssuedCredential(kind="access", value="v", issued_at=issued, expires_at=issued + timedelta(minutes=5))
    forever = IssuedCredential(kind="permanent", value="v", issued_at=issued)

    assert renew_at(hour, timedelta(seconds=60)) == issued + timedelta(minutes=54)
    assert renew_at(minute, timedelta(seconds=60)) == issued + timedelta(minutes=4)
    assert renew_at(forever, timedelta(seconds=60)) is None


def test_error_repr_and_credential_repr_hold_no_secret() -> None:
    error = ProviderError.access_token_rejected("Acme did not accept the access token.", status_code=401)
    issued = IssuedCredential(kind="access", value="tok-SECRET", issued_at=datetime(2025, 1, 1, tzinfo=UTC))

    assert "access_rejected=True" in repr(error)
    assert "tok-SECRET" not in repr(issued)


def test_reauth_without_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="reason"):
        ProviderError(ErrorKind.REAUTH_REQUIRED, "x")
