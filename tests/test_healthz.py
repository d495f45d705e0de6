"""/healthz: 200 when the database and the broker answer, 503 naming the one that does not."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client

from portal.celery import app as celery_app

pytestmark = pytest.mark.django_db

PASSWORD = "broker-password-must-not-leak"


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the Celery app at another broker for one test."""
    # Celery reads CELERY_BROKER_URL from the environment before its config.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)

    def use(url: str, transport_options: dict[str, Any] | None = None) -> None:
        monkeypatch.setitem(celery_app.conf, "broker_url", url)
        monkeypatch.setitem(celery_app.conf, "broker_transport_options", transport_options or {})

    return use


@pytest.fixture
def filesystem_broker(broker: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "broker"
    folder.mkdir()
    broker("filesystem://", {"data_folder_in": str(folder), "data_folder_out": str(folder)})
    return folder


def test_healthy_database_and_filesystem_broker_answer_200(client: Client, filesystem_broker: Path) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "secrets": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_a_missing_filesystem_broker_folder_is_unreachable(client: Client, broker: Any, tmp_path: Path) -> None:
    missing = str(tmp_path / "gone")
    broker("filesystem://", {"data_folder_in": missing, "data_folder_out": missing})

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "unreachable", "secrets": "ok"}


def test_an_unreachable_broker_answers_503_without_leaking_its_url(client: Client, broker: Any) -> None:
    broker(f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0")

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "unreachable", "secrets": "ok"}
    assert PASSWORD not in response.content.decode()


def test_an_unreachable_database_answers_503_without_the_error_text(
    client: Client, filesystem_broker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connections import health

    class DeadConnection:
        def cursor(self) -> Any:
            raise OperationalError(f'connection to "postgres://portal:{PASSWORD}@db:5432/portal" failed')

    monkeypatch.setattr(health, "connections", {"default": DeadConnection()})

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "unreachable", "broker": "ok", "secrets": "unreachable"}
    assert PASSWORD not in response.content.decode()


def test_healthz_refuses_writes(client: Client, filesystem_broker: Path) -> None:
    assert client.post("/healthz").status_code == 405


@pytest.mark.redis
def test_a_running_redis_broker_is_ok(client: Client, broker: Any) -> None:
    broker("redis://127.0.0.1:6379/15")

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "secrets": "ok"}
