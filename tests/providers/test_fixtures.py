"""Our documentation fixtures are the documentation's own examples, value for value."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .support import DOC_FIXTURES, FIXTURES, load_fixture


def _json_examples(text: str) -> list[Any]:
    """Every balanced {...} block of a doc text that parses as JSON (after dropping ` // comment` tails)."""
    examples: list[Any] = []
    depth, start = 0, -1
    for index, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                block = re.sub(r"\s//[^\n]*", "", text[start : index + 1])
                try:
                    examples.append(json.loads(block))
                except ValueError:
                    continue
    return examples


def _doc_examples() -> list[Any]:
    examples: list[Any] = []
    for path in sorted((FIXTURES / "provider-docs").glob("*.txt")):
        examples += _json_examples(path.read_text())
    return examples


@pytest.mark.parametrize("name", DOC_FIXTURES)
def test_doc_fixture_is_an_example_printed_in_the_docs(name: str) -> None:
    fixture = load_fixture(name)
    examples = _doc_examples()
    if "email" in fixture:
        # The published Coinify page masks its example address; compare the rest.
        fixture = {k: v for k, v in fixture.items() if k != "email"}
        examples = [{k: v for k, v in e.items() if k != "email"} for e in examples if isinstance(e, dict)]

    assert fixture in examples
