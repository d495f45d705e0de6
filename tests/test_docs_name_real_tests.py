"""Every test that README.md and SECURITY.md name as the proof of a promise exists.

A promise in those files names its test (in backticks): a file
(``tests/faults/test_outage.py``), a test in a file
(``tests/e2e/test_slow_renewal.py::test_two_workers_...``), a test module
(``test_guessing``) or a test function (``test_state_is_single_use``). A
renamed or deleted test would leave a promise standing on nothing; this
fails instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DOCUMENTS = ("README.md", "SECURITY.md")
# What stands in backticks: a path under tests/, optionally ::name, or a bare test_ name.
_REFERENCE = re.compile(r"`((?:tests/[\w/.\-]+)(?:::\w+)?|test_\w+)`")


def _references(document: str) -> list[str]:
    text = (ROOT / document).read_text(encoding="utf-8")
    # Names inside one pair of backticks may be listed with commas or a "::".
    found = _REFERENCE.findall(text)
    found += [name for chunk in re.findall(r"`([^`]*)`", text) for name in re.findall(r"::(test_\w+)", chunk)]
    return sorted(set(found))


def _defined_tests() -> tuple[set[str], set[str]]:
    functions: set[str] = set()
    modules: set[str] = set()
    for path in TESTS.rglob("*.py"):
        modules.add(path.stem)
        functions.update(re.findall(r"^\s*(?:async\s+)?def (test_\w+)\(", path.read_text(encoding="utf-8"), re.M))
    return functions, modules


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_test_a_document_names_exists(document: str) -> None:
    functions, modules = _defined_tests()
    missing = []
    for reference in _references(document):
        if reference.startswith("tests/"):
            path_part, _, name = reference.partition("::")
            path = ROOT / path_part
            if not path.exists() and not path_part.endswith(".py"):
                path = ROOT / f"{path_part}.py"  # a module named without its ending
            names_a_missing_test = bool(name) and path.is_file() and f"def {name}(" not in path.read_text("utf-8")
            if not path.exists() or names_a_missing_test:
                missing.append(reference)
        elif reference not in functions and reference not in modules:
            missing.append(reference)
    assert missing == [], f"{document} names tests that do not exist: {missing}"


def test_the_check_finds_a_name_that_is_not_a_test(tmp_path: Path) -> None:
    functions, modules = _defined_tests()
    assert "test_every_test_a_document_names_exists" in functions
    assert "test_docs_name_real_tests" in modules
    assert "test_a_promise_nobody_wrote_a_test_for" not in functions | modules
