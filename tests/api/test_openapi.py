"""The schema at /api/v1/openapi.json: valid OpenAPI 3.1, every route in it, every error a documented problem.

And the interactive docs at /api/v1/docs: their assets come from the portal's
own static files (tests/web/test_browser_api_docs.py renders them in Chromium).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db(transaction=True)

# Ninja's own views under /api/v1/: the schema, the docs, and its root (a 404).
NOT_OPERATIONS = {"openapi.json", "docs", ""}


def _schema(live_server: Any) -> dict[str, Any]:
    response = requests.get(f"{live_server.url}/api/v1/openapi.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def _routed_paths() -> list[str]:
    """Every /api/v1/ path template the URL configuration routes to (``{name}`` for a path parameter)."""
    found: list[str] = []

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif route.startswith("api/v1/") and route.removeprefix("api/v1/") not in NOT_OPERATIONS:
                found.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    return found


def _served_operations(server_url: str) -> set[tuple[str, str]]:
    """(METHOD, path) the server answers, found by asking: an unserved method on a routed path is a 405."""
    served = set()
    for template in _routed_paths():
        path = re.sub(r"\{\w+\}", "1", template)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            status = requests.request(method, server_url + path, timeout=10).status_code
            if status != 405:
                assert status == 401, (method, path, status)  # served, and it wants a key
                served.add((method, template))
    return served


def test_the_schema_is_valid_openapi_3_1(live_server: Any) -> None:
    schema = _schema(live_server)
    assert schema["openapi"].startswith("3.1")
    validate(schema)


def test_the_schema_covers_every_route(live_server: Any) -> None:
    schema = _schema(live_server)
    documented = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    served = _served_operations(live_server.url)
    assert len(served) >= 14
    assert documented == served
    requests_path = "/api/v1/households/{household_id}/reconnect-requests"
    assert {("GET", requests_path), ("POST", requests_path)} <= served


def test_every_operation_documents_its_key_and_its_errors_as_problems(live_server: Any) -> None:
    schema = _schema(live_server)
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {"type": "http", "scheme": "bearer"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation["security"] == [{"ApiKeyAuth": []}], where
            responses = operation["responses"]
            assert {"401", "422", "429"} <= set(responses), where
            if method == "post":
                assert "403" in responses, where
                assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"]), where
            assert "Retry-After" in responses["429"]["headers"], where
            for code, answer in responses.items():
                if int(code) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"], (where, code)
                    assert answer["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")


def test_the_docs_page_loads_its_assets_from_the_portals_static_files(live_server: Any) -> None:
    page = requests.get(f"{live_server.url}/api/v1/docs", timeout=10)
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.netloc, asset  # same origin: no CDN
        assert parts.path.startswith("/static/"), asset
        assert requests.get(f"{live_server.url}{asset}", timeout=10).status_code == 200, asset
