"""The one rule of the layout that a test can hold: only ``lifecycle/rules.py`` decides a connection's status.

Everything else stores what the rules returned (``**transition.fields()``),
so a connection's status, reason, failure count and degraded-since are never
written from a literal anywhere but there. This reads the code the way a
reviewer would and names each place that breaks the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DECIDED_FIELDS = {"status", "reason", "consecutive_failures", "degraded_since"}
RULES = PROJECT / "connections" / "lifecycle" / "rules.py"
# Packages whose code could write a connection (sandbox/ has statuses of its own and never touches ours).
CHECKED = ("connections", "api", "reports")


def _decided_value(node: ast.AST | None) -> bool:
    """A connection status or reason spelled out: ``Status.ACTIVE``, ``Reason.EXPIRED``, ``m.Status.X``.

    Other models' own status choices (``WebhookDelivery.Status.PENDING``) are theirs to write.
    """
    if node is None:
        return False
    prefix = ast.unparse(node).split(".")[:-1]
    return bool(prefix) and prefix[-1] in ("Status", "Reason") and all(p in ("m", "models") for p in prefix[:-1])


WRITES = ("update", "create", "update_or_create", "get_or_create", "bulk_update")


def _on_connection(call: ast.Call) -> bool:
    """``Connection.objects....update(...)``, ``Connection(...)``, ``m.Connection.objects.create(...)``."""
    root = ast.unparse(call.func).split("(")[0].split(".")
    return "Connection" in root[:2]


def _is_write(call: ast.Call) -> bool:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr in WRITES
    return ast.unparse(call.func).endswith("Connection")


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    where = path.relative_to(PROJECT) if path.is_relative_to(PROJECT) else path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_write(node):
            for keyword in node.keywords:
                spelled_out = keyword.arg in ("status", "reason") and _decided_value(keyword.value)
                if keyword.arg in DECIDED_FIELDS and (_on_connection(node) or spelled_out):
                    found.append(f"{where}:{node.lineno} writes {keyword.arg}= through {ast.unparse(node.func)}")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if not isinstance(element, ast.Attribute) or element.attr not in DECIDED_FIELDS:
                        continue
                    if element.attr in ("consecutive_failures", "degraded_since") or _decided_value(node.value):
                        found.append(f"{where}:{node.lineno} assigns .{element.attr}")
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in ("status", "reason") and _decided_value(value):
                    found.append(f"{where}:{node.lineno} puts {key.value} into a dict")
    return found


def _modules() -> list[Path]:
    paths = []
    for package in CHECKED:
        root = PROJECT / package
        if root.exists():
            paths += [p for p in sorted(root.rglob("*.py")) if "migrations" not in p.parts and p != RULES]
    return paths


def test_only_the_rules_module_decides_a_connections_status() -> None:
    offences = [offence for path in _modules() for offence in _offences(path)]
    assert offences == []


def test_the_check_finds_a_status_written_outside_the_rules(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "def flag(connection, Connection, Status):\n"
        "    Connection.objects.filter(pk=connection.pk).update(status=Status.NEEDS_RECONNECT)\n"
        "    connection.consecutive_failures = 3\n"
        "    connection.status = Status.ACTIVE\n"
        "    return {'reason': Reason.EXPIRED}\n"
    )
    assert len(_offences(planted)) == 4
