import pytest
from django.db import IntegrityError

from connections.models import Status
from tests.factories import ConnectionFactory, CredentialFactory


@pytest.mark.django_db
def test_needs_reconnect_without_a_reason_is_refused_by_the_database():
    with pytest.raises(IntegrityError):
        ConnectionFactory(status=Status.NEEDS_RECONNECT, reason="")


@pytest.mark.django_db
def test_status_message_names_provider_and_platform_and_next_step():
    connection = ConnectionFactory(status=Status.NEEDS_RECONNECT, reason="revoked")
    assert connection.status_message == (
        "Coinbase via Turnqey: access was revoked at Coinbase. Ask the client to reconnect."
    )


@pytest.mark.django_db
def test_credential_str_never_shows_the_value():
    credential = CredentialFactory(value="super-secret-value")
    assert "super-secret-value" not in str(credential)
    assert "super-secret-value" not in repr(credential)
