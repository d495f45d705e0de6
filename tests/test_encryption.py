"""Secrets at rest: the encrypted field, wrong keys, and key rotation."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from connections import crypto
from connections.models import Credential, ProviderApp
from tests.factories import CredentialFactory, ProviderAppFactory

pytestmark = pytest.mark.django_db


def new_key() -> str:
    return Fernet.generate_key().decode()


def raw_value(model: type, field: str, pk: int) -> str:
    """The column as stored, read with plain SQL (no field conversion)."""
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field(field).column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def stored_secret_count() -> int:
    """Every non-null encrypted value in the database (credentials and app secrets)."""
    return Credential.objects.count() + ProviderApp.objects.filter(client_secret__isnull=False).count()


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", "--no-progress", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def key_a(settings: object) -> str:
    key = new_key()
    settings.TOKEN_ENCRYPTION_KEYS = [key]  # type: ignore[attr-defined]
    return key


def test_a_secret_reads_back_as_it_was_written(key_a: str) -> None:
    credential = CredentialFactory(value="refresh-token-ü-✓")

    assert Credential.objects.get(pk=credential.pk).value == "refresh-token-ü-✓"


def test_the_database_row_holds_ciphertext_not_the_plaintext(key_a: str) -> None:
    credential = CredentialFactory(value="plaintext-access-token-123")

    stored = raw_value(Credential, "value", credential.pk)

    assert "plaintext-access-token-123" not in stored
    assert crypto.decrypt(stored) == "plaintext-access-token-123"


def test_the_provider_app_secret_is_encrypted_in_its_row_too(key_a: str) -> None:
    app = ProviderAppFactory(client_secret="app-secret-xyz")

    stored = raw_value(ProviderApp, "client_secret", app.pk)

    assert "app-secret-xyz" not in stored
    assert ProviderApp.objects.get(pk=app.pk).client_secret == "app-secret-xyz"


def test_encryption_is_randomised_so_equal_secrets_differ_in_the_database(key_a: str) -> None:
    one = CredentialFactory(value="same")
    two = CredentialFactory(value="same")

    assert raw_value(Credential, "value", one.pk) != raw_value(Credential, "value", two.pk)


def test_a_wrong_key_raises_instead_of_returning_ciphertext_or_empty(key_a: str, settings: object) -> None:
    credential = CredentialFactory(value="secret-under-key-a")
    settings.TOKEN_ENCRYPTION_KEYS = [new_key()]  # type: ignore[attr-defined]

    with pytest.raises(crypto.DecryptionError):
        Credential.objects.get(pk=credential.pk)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(raw_value(Credential, "value", credential.pk))


def test_a_corrupted_value_raises(key_a: str) -> None:
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt("not-a-fernet-token")


def test_null_stays_null(key_a: str) -> None:
    app = ProviderAppFactory(client_secret=None)

    assert raw_value(ProviderApp, "client_secret", app.pk) is None
    assert ProviderApp.objects.get(pk=app.pk).client_secret is None


def test_old_ciphertext_keeps_working_until_its_key_is_removed_after_rotation(key_a: str, settings: object) -> None:
    credential = CredentialFactory(value="long-lived-offline-token")
    app = ProviderAppFactory(name="second", client_secret="app-secret")
    key_b = new_key()

    # New key first: old values still decrypt with the old key in the list.
    settings.TOKEN_ENCRYPTION_KEYS = [key_b, key_a]  # type: ignore[attr-defined]
    assert Credential.objects.get(pk=credential.pk).value == "long-lived-offline-token"
    assert not crypto.is_current(raw_value(Credential, "value", credential.pk))

    total = stored_secret_count()
    summary = rotate()

    assert f"Rotated {total}, already current 0" in summary
    assert crypto.is_current(raw_value(Credential, "value", credential.pk))
    # The old key can go now.
    settings.TOKEN_ENCRYPTION_KEYS = [key_b]  # type: ignore[attr-defined]
    assert Credential.objects.get(pk=credential.pk).value == "long-lived-offline-token"
    assert ProviderApp.objects.get(pk=app.pk).client_secret == "app-secret"


def test_removing_the_old_key_before_rotating_breaks_decryption(key_a: str, settings: object) -> None:
    credential = CredentialFactory(value="token")
    settings.TOKEN_ENCRYPTION_KEYS = [new_key()]  # type: ignore[attr-defined]

    with pytest.raises(crypto.DecryptionError):
        Credential.objects.get(pk=credential.pk)


def test_rotating_twice_rotates_nothing_the_second_time(key_a: str, settings: object) -> None:
    CredentialFactory.create_batch(3)
    settings.TOKEN_ENCRYPTION_KEYS = [new_key(), key_a]  # type: ignore[attr-defined]

    total = stored_secret_count()

    first = rotate("--batch-size", "2")
    second = rotate("--batch-size", "2")

    assert f"Rotated {total}, already current 0" in first
    assert f"Rotated 0, already current {total}" in second


def test_rotation_walks_every_batch(key_a: str, settings: object) -> None:
    credentials = CredentialFactory.create_batch(5)
    settings.TOKEN_ENCRYPTION_KEYS = [new_key(), key_a]  # type: ignore[attr-defined]

    rotate("--batch-size", "2")

    assert all(crypto.is_current(raw_value(Credential, "value", c.pk)) for c in credentials)


def test_an_undecryptable_value_is_reported_by_row_and_fails_the_run_after_the_rest(
    key_a: str, settings: object
) -> None:
    good = CredentialFactory(value="good-token")
    lost = CredentialFactory(value="lost-key-token")
    # The "lost" value was written under a key that is no longer configured.
    lost_key = new_key()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE connections_credential SET value = %s WHERE id = %s",
            [Fernet(lost_key.encode()).encrypt(b"lost-key-token").decode(), lost.pk],
        )
    settings.TOKEN_ENCRYPTION_KEYS = [new_key(), key_a]  # type: ignore[attr-defined]
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as excinfo:
        call_command("rotate_encryption_keys", "--no-progress", stdout=out, stderr=err)

    assert crypto.is_current(raw_value(Credential, "value", good.pk))
    assert f"connections.Credential.value for row id={lost.pk}" in err.getvalue()
    everything = out.getvalue() + err.getvalue() + str(excinfo.value)
    assert "lost-key-token" not in everything
    assert raw_value(Credential, "value", lost.pk) not in everything
    assert "could not decrypt 1" in out.getvalue()


def test_rotation_never_overwrites_a_value_written_meanwhile(
    key_a: str, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = CredentialFactory(value="old-refresh-token")
    settings.TOKEN_ENCRYPTION_KEYS = [new_key(), key_a]  # type: ignore[attr-defined]
    old_token = raw_value(Credential, "value", credential.pk)
    total = stored_secret_count()
    real_rotate = crypto.rotate

    def rotate_while_the_app_renews(token: str) -> str:
        if token == old_token:
            # The lifecycle renews the token between the command's read and write.
            Credential.objects.filter(pk=credential.pk).update(value="renewed-refresh-token")
        return real_rotate(token)

    monkeypatch.setattr(crypto, "rotate", rotate_while_the_app_renews)

    summary = rotate()

    assert Credential.objects.get(pk=credential.pk).value == "renewed-refresh-token"
    assert f"Rotated {total - 1}, already current 0, changed or deleted meanwhile (left as is) 1" in summary


def test_rotation_does_not_double_encrypt(key_a: str, settings: object) -> None:
    credential = CredentialFactory(value="exact-value")
    key_b = new_key()
    settings.TOKEN_ENCRYPTION_KEYS = [key_b, key_a]  # type: ignore[attr-defined]

    rotate()

    stored = raw_value(Credential, "value", credential.pk)
    assert Fernet(key_b.encode()).decrypt(stored.encode()) == b"exact-value"


def test_rotation_finds_every_encrypted_field_without_a_list() -> None:
    from connections.management.commands.rotate_encryption_keys import encrypted_fields

    found = {(model._meta.label, field.name) for model, field in encrypted_fields()}

    assert {("connections.Credential", "value"), ("connections.ProviderApp", "client_secret")} <= found


def test_bulk_update_of_a_secret_stores_it_encrypted_and_reads_it_back(key_a: str) -> None:
    credentials = CredentialFactory.create_batch(2)
    for index, credential in enumerate(credentials):
        credential.value = f"renewed-{index}"

    Credential.objects.bulk_update(credentials, ["value"])

    for index, credential in enumerate(credentials):
        assert Credential.objects.get(pk=credential.pk).value == f"renewed-{index}"
        assert f"renewed-{index}" not in raw_value(Credential, "value", credential.pk)
