"""The explicit provider registry and what each client declares about itself."""

from __future__ import annotations

import pytest

from connections.models import Provider
from connections.providers.registry import PROVIDERS, client_class


def test_registry_has_one_client_per_provider_choice() -> None:
    assert set(PROVIDERS) == set(Provider.values)


def test_unknown_provider_key_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="coinify"):
        client_class("nope")


@pytest.mark.parametrize(
    ("key", "flow"), [("turnqey", "redirect"), ("dapi", "redirect"), ("coinify", "form"), ("bloquo", "form")]
)
def test_each_provider_declares_its_flow(key: str, flow: str) -> None:
    assert client_class(key).flow == flow


def test_redirect_providers_declare_the_callback_parameters_they_send_back() -> None:
    declared = {key: cls.callback_parameters for key, cls in PROVIDERS.items()}

    assert declared == {
        "turnqey": {"state", "identity", "collection", "platform", "status", "error_description"},
        "dapi": {
            "state",
            "accessCode",
            "connectionID",
            "userSecret",
            "userID",
            "tokenID",
            "error",
            "error_description",
        },
        "coinify": frozenset(),
        "bloquo": frozenset(),
    }


@pytest.mark.parametrize("key", ["coinify", "bloquo"])
def test_form_providers_describe_their_fields_with_secrets_marked(key: str) -> None:
    from tests.providers.support import app_config

    fields = client_class(key)(app_config(key)).credential_fields()

    assert fields
    assert any(field.secret for field in fields)
    assert all(field.input_type == "password" for field in fields if field.secret)
