"""The suite's promise that no test reaches beyond this machine."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NetworkRefused


def test_a_connection_to_another_host_is_refused_before_it_is_made() -> None:
    with pytest.raises(NetworkRefused), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routable


def test_a_connection_to_this_machine_is_allowed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
