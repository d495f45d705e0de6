"""The explicit provider registry and what each client declares about itself.

A provider is its client module (``connections/providers/<key>.py``), one
registry line, and its simulator (``sandbox/services/<key>.py`` and
``sandbox/views/<key>.py``, mounted in ``sandbox/services`` and
``sandbox/urls.py``). :func:`test_no_module_outside_a_providers_own_names_its_key`
keeps it that way: the portal's other code reads what a provider declares.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from connections.models import Provider
from connections.providers.endpoints import ENVIRONMENTS, host_entry
from connections.providers.registry import PROVIDER_NAMES, PROVIDERS, client_class
from connections.wording import provider_name
from sandbox import models as sandbox_models
from sandbox.services import SIMULATORS


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


# --- What every provider declares ----------------------------------------------------


@pytest.mark.parametrize("key", sorted(PROVIDERS))
def test_every_provider_declares_its_name_flow_platforms_and_documented_hosts(key: str) -> None:
    client = client_class(key)

    assert client.key == key
    assert client.display_name
    assert PROVIDER_NAMES[key] == client.display_name == provider_name(key)
    assert client.flow in ("redirect", "form")
    assert client.platforms
    assert set(client.documented_base_urls) <= set(ENVIRONMENTS)
    for environment, url in client.documented_base_urls.items():
        assert host_entry(url), (key, environment, url)
        assert client.documented_hosts(environment) == [host_entry(url)]


def test_the_model_choices_name_each_provider_as_its_client_does() -> None:
    # The choices are in the migrations: a provider's name changes there too.
    assert dict(Provider.choices) == PROVIDER_NAMES


def test_every_provider_has_a_simulator_mount_and_every_mount_declares_its_error_shape_and_lifetimes() -> None:
    mounts = set(sandbox_models.Provider.values)

    assert set(PROVIDERS) <= mounts
    assert set(SIMULATORS) == mounts
    for mount, simulator in SIMULATORS.items():
        body = simulator.error_body(status=503, message="Service Unavailable")
        assert "Service Unavailable" in str(body), mount
        assert simulator.LIFETIMES, mount
        assert all(seconds > 0 for seconds in simulator.LIFETIMES.values()), mount


# --- The seam: no other module names a provider ------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("api", "connections", "mfa", "portal", "reports", "sandbox")
# Every spelling of a provider in code: its key and its sandbox mounts ("bloquo-production").
KEYS = tuple(sorted(PROVIDERS))
MOUNTS = tuple(sorted(set(KEYS) | set(sandbox_models.Provider.values)))
# Where naming providers is the job itself (and nowhere else):
REGISTRIES = {
    # The model choices (the migrations hold them too).
    "connections/models/base.py",
    # The sandbox's mounts, its one line per simulator, and the URLs that mount them.
    "sandbox/models.py",
    "sandbox/services/__init__.py",
    "sandbox/urls.py",
}
# The demo world, which picks a provider for each demo connection, is data.
DATA = ("connections/demo/",)
# The sandbox's sign-in hints page lists each simulator's people in its own
# section, and its actions name what they issue.
HINTS_PAGE_STRINGS = {"sandbox/views/hints.py": {*KEYS, "bloquo-secret", "coinify-offline"}}
HINTS_PAGE_TEMPLATE_TAG = re.compile(r'only == "[a-z-]+"')


def owner(relative: str) -> str | None:
    """The provider whose own module this is: its client, or its simulator's services or views."""
    path = Path(relative)
    own_places = ("connections/providers", "sandbox/services", "sandbox/views")
    return path.stem if path.suffix == ".py" and path.parent.as_posix() in own_places and path.stem in KEYS else None


def names_a_provider(text: str, own: str | None) -> bool:
    """A key or mount, exactly or as the prefix of a code ("bloquo-production", "coinify-offline")."""
    for mount in MOUNTS:
        if (text == mount or text.startswith(f"{mount}-")) and not (own and mount.startswith(own)):
            return True
    return False


def docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that are documentation: docstrings and other bare string statements."""
    found = set()
    for node in ast.walk(tree):
        for statement in getattr(node, "body", []) if isinstance(getattr(node, "body", None), list) else []:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                found.add(id(statement.value))
    return found


def provider_names_in_python(source: str, own: str | None) -> Iterator[tuple[int, str]]:
    """(line, what) for each provider a module's code names: a string that is a key or mount, ``Provider.DAPI``."""
    tree = ast.parse(source)
    documentation = docstrings(tree)
    enum_members = {mount.upper().replace("-", "_") for mount in MOUNTS}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documentation:
            if names_a_provider(node.value, own):
                yield node.lineno, repr(node.value)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in enum_members
            and not (own and node.attr.lower().replace("_", "-").startswith(own))
        ):
            yield node.lineno, f".{node.attr}"


def provider_names_in_template(source: str) -> Iterator[tuple[int, str]]:
    """(line, tag) for each template tag or variable comparing with a provider's key."""
    for match in re.finditer(r"\{%.*?%\}|\{\{.*?\}\}", source, re.S):
        for literal in re.findall(r"""["']([^"']*)["']""", match.group()):
            if names_a_provider(literal, None):
                yield source.count("\n", 0, match.start()) + 1, match.group()


def seam_breaks(root: Path) -> list[str]:
    breaks = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if "/migrations/" in relative or relative in REGISTRIES or relative.startswith(DATA):
                continue
            if path.suffix == ".py":
                allowed = HINTS_PAGE_STRINGS.get(relative, set())
                for line, what in provider_names_in_python(path.read_text(), owner(relative)):
                    if what.strip("'") not in allowed:
                        breaks.append(f"{relative}:{line}: {what}")
            elif path.suffix == ".html":
                for line, tag in provider_names_in_template(path.read_text()):
                    if not (relative.endswith("sandbox/sign_ins.html") and HINTS_PAGE_TEMPLATE_TAG.search(tag)):
                        breaks.append(f"{relative}:{line}: {tag}")
    for path in sorted((root / "templates").rglob("*.html")):
        for line, tag in provider_names_in_template(path.read_text()):
            breaks.append(f"{path.relative_to(root).as_posix()}:{line}: {tag}")
    return breaks


def test_no_module_outside_a_providers_own_names_its_key() -> None:
    """A fifth provider is its own modules and registry lines: no other code branches on a provider.

    Facts about one provider (its name, hosts, error shape, lifetimes, words)
    are declared by its client or simulator and read through the registry.
    """
    assert seam_breaks(ROOT) == []


def test_the_seam_scan_sees_code_but_not_documentation(tmp_path: Path) -> None:
    module = tmp_path / "connections" / "elsewhere.py"
    module.parent.mkdir()
    module.write_text(
        '''"""Talks about "turnqey" and Provider.DAPI in prose only."""\n'''
        "# and a comment naming bloquo\n"
        "def f(provider):\n"
        '''    """Even "coinify" here is prose."""\n'''
        """    return provider == "coinify" or provider in (Provider.DAPI, "bloquo-production")\n"""
    )
    template = tmp_path / "templates" / "page.html"
    template.parent.mkdir()
    template.write_text('<p>Turnqey and bloquo, in words.</p>{% if provider == "bloquo" %}x{% endif %}\n')

    assert seam_breaks(tmp_path) == [
        "connections/elsewhere.py:5: 'coinify'",
        "connections/elsewhere.py:5: .DAPI",
        "connections/elsewhere.py:5: 'bloquo-production'",
        'templates/page.html:1: {% if provider == "bloquo" %}',
    ]
