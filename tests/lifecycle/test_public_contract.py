"""Code outside the lifecycle package uses only its public contract (``connections/lifecycle/__init__.py``).

Tests may reach inside; the portal's own modules may not, so the package's
inside can change without breaking its callers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import connections.lifecycle

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "connections.lifecycle"
CHECKED = ("connections", "api", "reports", "mfa", "portal", "sandbox", "bench")
PUBLIC = frozenset(connections.lifecycle.__all__)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_from(node: ast.ImportFrom, *, module: str, is_package: bool) -> str:
    """The absolute name of the module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def reaches_inside(source: str, *, module: str, is_package: bool = False) -> list[str]:
    """Every place in ``source`` (the code of ``module``) that uses a lifecycle name outside ``__all__``."""
    tree = ast.parse(source)
    found: list[str] = []
    bound_to_package: set[str] = set()  # local names that are the package itself
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(f"{PACKAGE}."):
                    found.append(f"line {node.lineno}: import {alias.name}")
                elif alias.name == PACKAGE and alias.asname:
                    bound_to_package.add(alias.asname)
        elif isinstance(node, ast.ImportFrom):
            origin = _imported_from(node, module=module, is_package=is_package)
            if origin.startswith(f"{PACKAGE}."):
                found.append(f"line {node.lineno}: from {origin} import ...")
            elif origin == PACKAGE:
                found += [
                    f"line {node.lineno}: from {PACKAGE} import {alias.name}"
                    for alias in node.names
                    if alias.name not in PUBLIC
                ]
            elif origin == "connections":
                bound_to_package |= {alias.asname or alias.name for alias in node.names if alias.name == "lifecycle"}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound_to_package
            and node.attr not in PUBLIC
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def _checked_modules() -> list[Path]:
    inside = ROOT / "connections" / "lifecycle"
    return sorted(
        path
        for folder in CHECKED
        for path in (ROOT / folder).rglob("*.py")
        if inside not in path.parents and "migrations" not in path.parts
    )


def test_no_module_outside_the_lifecycle_imports_its_inside() -> None:
    modules = _checked_modules()
    assert len(modules) > 50  # the walk found the portal's code
    offences = [
        f"{path.relative_to(ROOT)} {place}"
        for path in modules
        for place in reaches_inside(path.read_text(), module=_module_name(path), is_package=path.name == "__init__.py")
    ]
    assert offences == [], "use the names connections/lifecycle/__init__.py exports:\n" + "\n".join(offences)


def test_every_way_of_reaching_inside_is_caught() -> None:
    module = "connections.jobs.housekeeping"
    assert reaches_inside("from ..lifecycle.store import event_row", module=module)
    assert reaches_inside("from connections.lifecycle.claims import deadline_near_q", module=module)
    assert reaches_inside("import connections.lifecycle.config", module=module)
    assert reaches_inside("from connections.lifecycle import clients", module=module)
    assert reaches_inside("from .. import lifecycle\nlifecycle.clients.client_describing(app=None)", module=module)
    assert reaches_inside("from . import lifecycle\nlifecycle.store", module="connections", is_package=True)


def test_the_public_names_pass() -> None:
    module = "connections.selectors.dashboard"
    source = "from .. import lifecycle\nfrom ..lifecycle import rules, tunables\nlifecycle.deadline_is_near_q\n"
    assert reaches_inside(source, module=module) == []
    assert reaches_inside("from ..models import Connection", module=module) == []
