"""The README's API examples work as written: its sample cursor, its paging loop, its first curl."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from .conftest import ApiWorld

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_HOST = "http://127.0.0.1:8000"


def _integrations() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Integrations\n")
    return text[start : text.index("\n## ", start + 1)]


def _sample_cursor() -> str:
    (cursor,) = re.findall(r'"next_cursor": "([^"]+)"', _integrations())
    return cursor


def test_the_readmes_sample_cursor_is_one_the_api_accepts_and_a_hand_made_one_is_a_400(api_world: ApiWorld) -> None:
    reader = api_world.client(api_world.ours.read_key)

    sample = reader.get("/connections", params={"cursor": _sample_cursor(), "status": "needs_reconnect"})
    assert sample.status_code == 200, sample.text

    # What the README once showed: a cursor built by hand from an id alone.
    hand_made = base64.urlsafe_b64encode(json.dumps({"id": 42}).encode()).decode().rstrip("=")
    refused = reader.get("/connections", params={"cursor": hand_made})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "query.cursor"
    assert "a hand-made one is a `400` naming `query.cursor`" in " ".join(_integrations().split())


def test_the_readmes_paging_reads_every_connection_once_in_the_order_it_states(api_world: ApiWorld) -> None:
    reader = api_world.client(api_world.ours.read_key)
    assert "connections and\nclients by household, then id" in _integrations()

    # The loop the README shows: pass next_cursor back as cursor until it is null.
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = reader.get("/connections", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [(item["household"]["id"], item["id"]) for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    expected = sorted((c.household_id, c.pk) for c in api_world.ours.connections)
    assert seen == expected

    clients = reader.get("/clients", params={"limit": 1})
    following = reader.get("/clients", params={"limit": 1, "cursor": clients.json()["next_cursor"]})
    order = [(c["household_id"], c["id"]) for c in clients.json()["items"] + following.json()["items"]]
    assert order == sorted(order)


def test_the_readmes_first_curl_answers_a_page(api_world: ApiWorld) -> None:
    (url,) = re.findall(r'"(http://127\.0\.0\.1:8000/api/v1/connections\?[^"]+)"', _integrations())
    reader = api_world.client(api_world.ours.read_key)
    page = reader.http.get(url.replace(DOCUMENTED_HOST, api_world.url), timeout=15)
    assert page.status_code == 200, page.text
    assert {"items", "next_cursor", "next_changed_since"} <= set(page.json())
    assert {item["status"] for item in page.json()["items"]} == {"needs_reconnect"}
