"""PostgreSQL goes away for 30 seconds right after a provider rotated the tokens: nothing is lost.

The provider has already spent the old refresh token; the new one exists only
in the worker's memory. The outage is real at the network level: the portal
reaches PostgreSQL through a local TCP proxy that the test cuts (every open
session is dropped, new ones are refused) the moment the renewal answers, and
restores 30 seconds later. The check keeps the new tokens, retries the store
with backoff while its claim (stretched before the renewal started) keeps
every other worker off the row, and stores them when the database is back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection as db_connection

from connections import lifecycle
from connections import models as m
from connections.providers.coinify import CoinifyClient

from .support import Portal, SandboxControl, connect_coinify, events, make_due

OUTAGE_SECONDS = 30.0


class CuttableProxy:
    """A TCP forwarder to PostgreSQL that can be cut (drop everything, refuse new sessions) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_at: float | None = None
        self.refused = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._up:
                    self.refused += 1
                    client.close()
                    continue
                upstream = socket.create_connection(self.target)
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            self.cut_at = time.monotonic()
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def proxied_database() -> Iterator[CuttableProxy]:
    """Every new database session of this process (test and live server threads) goes through the proxy."""
    settings_dict: dict[str, Any] = db_connection.settings_dict
    host, port = settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432)
    proxy = CuttableProxy((host, port))
    db_connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(proxy.port)
    try:
        yield proxy
    finally:
        proxy.restore()
        db_connection.close()
        settings_dict["HOST"], settings_dict["PORT"] = host, str(port)
        proxy.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_rotated_tokens_survive_a_30_second_database_outage(
    sandbox: SandboxControl, portal: Portal, proxied_database: CuttableProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.lifetimes("coinify", access=150)  # every check renews
    connection_row = connect_coinify(sandbox, portal)
    original_renew = CoinifyClient.renew

    def renew_then_lose_the_database(self: CoinifyClient, **kwargs: Any) -> Any:
        issued = original_renew(self, **kwargs)
        proxied_database.cut()
        threading.Timer(OUTAGE_SECONDS, proxied_database.restore).start()
        return issued

    monkeypatch.setattr(CoinifyClient, "renew", renew_then_lose_the_database)
    make_due(connection_row)

    started = time.monotonic()
    result = lifecycle.connection_check(connection_id=connection_row.pk)
    took = time.monotonic() - started

    monkeypatch.setattr(CoinifyClient, "renew", original_renew)
    assert proxied_database.refused > 0, "the database really was unreachable"
    assert took >= OUTAGE_SECONDS
    assert result.outcome == lifecycle.Outcome.OK
    assert result.renewed
    connection_row.refresh_from_db()
    assert connection_row.status == m.Status.ACTIVE
    assert len(events(connection_row, m.ConnectionEvent.Kind.RENEWED)) == 1

    # The stored refresh token is the one the provider issued last: the next renewal spends it fine.
    make_due(connection_row)
    again = lifecycle.connection_check(connection_id=connection_row.pk)
    assert again.outcome == lifecycle.Outcome.OK
    assert again.renewed
    grants = sandbox.requests("coinify", path="/auth", grant_type="refresh_token")
    assert [g["status"] for g in grants] == [200, 200]
