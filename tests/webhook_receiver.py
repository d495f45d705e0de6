"""A real webhook receiver for the test suites: an HTTP server on 127.0.0.1 in a thread.

It records every request it is sent (headers and the exact body bytes) and
answers from a script: a status, a delay (to provoke the portal's timeout), a
redirect, or a reply body larger than the portal will read. Tests verify what
arrived with the ``standardwebhooks`` library itself, exactly as a firm's
receiver would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request."""

    status: int = 200
    delay: float = 0.0  # seconds to wait before answering
    location: str = ""  # a Location header (for a 3xx)
    body_bytes: int = 2  # how much reply body to send ("ok" by default)
    drip: bool = False  # send the body slowly, forever (until the portal hangs up)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str) -> Any:
        """The JSON payload, if the signature verifies with ``secret``; raises WebhookVerificationError if not."""
        return Webhook(secret).verify(self.body, self.headers)

    def verifies_with(self, secret: str) -> bool:
        try:
            self.verified(secret)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class Receiver:
    """The running receiver: ``url`` to register, ``script`` of answers (the last one repeats), ``received``."""

    url: str
    script: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_next(self) -> Answer:
        with self.lock:
            if len(self.script) > 1:
                return self.script.pop(0)
            return self.script[0] if self.script else Answer()

    def record(self, request: Received) -> None:
        with self.lock:
            self.received.append(request)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The requests once there are ``count`` (a delivery may still be in flight in another thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self.lock:
            return list(self.received)

    def types(self) -> list[str]:
        import json

        with self.lock:
            return [json.loads(r.body)["type"] for r in self.received]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.record(Received(path=self.path, headers=dict(self.headers.items()), body=body))
            answer = receiver.answer_next()
            if answer.delay:
                time.sleep(answer.delay)
            try:
                self.send_response(answer.status)
                if answer.location:
                    self.send_header("Location", answer.location)
                if answer.drip:
                    self.send_header("Content-Length", str(10**9))
                    self.end_headers()
                    while True:  # until the portal hangs up
                        self.wfile.write(b"x" * 1024)
                        self.wfile.flush()
                        time.sleep(0.01)
                payload = (b"ok" + b"." * max(0, answer.body_bytes - 2))[: max(answer.body_bytes, 0)]
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the portal stopped reading, as it should

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook_receiver(*script: Answer) -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1 for the length of the block."""
    receiver = Receiver(url="", script=list(script))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/portal"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
