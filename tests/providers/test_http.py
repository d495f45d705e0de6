"""The shared request helper in providers/http.py and transport.py: retries, timeouts, redirects, the session."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses

from connections.providers.errors import ErrorKind, ProviderError
from connections.providers.http import ProviderHttp, total_timeout
from connections.providers.transport import make_retry, make_session, shared_session

URL = "http://provider.test/thing"
PORTS = range(8101, 8110)  # this suite's own port range


def http(**kwargs: object) -> ProviderHttp:
    return ProviderHttp("Acme", **kwargs)  # type: ignore[arg-type]


# --- retries ----------------------------------------------------------------------------


def test_idempotent_request_is_retried_on_a_gateway_error(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=502)
    rsps.add(responses.GET, URL, json={"ok": True})

    reply = http().request("GET", URL, endpoint="thing")

    assert reply.status == 200
    assert len(rsps.calls) == 2


def test_post_is_never_retried(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, URL, status=503)
    rsps.add(responses.POST, URL, json={"ok": True})

    with pytest.raises(ProviderError) as info:
        http().request("POST", URL, endpoint="thing")

    assert info.value.kind == ErrorKind.TRANSIENT
    assert len(rsps.calls) == 1


def test_retries_stop_after_two_and_the_failure_is_transient(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=504)

    with pytest.raises(ProviderError) as info:
        http().request("GET", URL, endpoint="thing")

    assert info.value.status_code == 504
    assert len(rsps.calls) == 3


def test_a_short_retry_after_is_waited_out_and_a_long_one_handed_up(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=503, headers={"Retry-After": "1"})
    rsps.add(responses.GET, URL, status=503, headers={"Retry-After": "3600"})
    rsps.add(responses.GET, URL, json={"ok": True})

    with pytest.raises(ProviderError) as info:
        http().request("GET", URL, endpoint="thing")

    assert info.value.retry_after == 3600
    assert len(rsps.calls) == 2


def test_rate_limit_is_handed_to_the_caller_not_retried(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=429, headers={"Retry-After": "2"})

    with pytest.raises(ProviderError) as info:
        http().request("GET", URL, endpoint="thing")

    assert info.value.retry_after == 2
    assert len(rsps.calls) == 1


def test_garbage_retry_after_is_no_hint_and_no_crash(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=503, headers={"Retry-After": "soon-ish"})

    with pytest.raises(ProviderError) as info:
        http().request("GET", URL, endpoint="thing")

    assert info.value.retry_after is None


def test_client_errors_come_back_for_the_provider_to_read(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, status=404, json={"error": "nope"})

    reply = http().request("GET", URL, endpoint="thing")

    assert reply.status == 404
    assert reply.json_object().text("error") == "nope"
    assert len(rsps.calls) == 1


# --- timeouts, redirects, session -----------------------------------------------------------


def test_timeouts_come_from_settings_at_call_time(rsps: responses.RequestsMock, settings: object) -> None:
    rsps.add(responses.GET, URL, json={})
    settings.PROVIDER_CONNECT_TIMEOUT = 1.5  # type: ignore[attr-defined]
    settings.PROVIDER_READ_TIMEOUT = 4  # type: ignore[attr-defined]

    http().request("GET", URL, endpoint="thing")

    assert rsps.calls[0].request.req_kwargs["timeout"] == (1.5, 4.0)


class _RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, object]] = []

    def request(self, method: str, url: str, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.seen.append(kwargs)
        return super().request(method, url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_redirects_are_never_followed(rsps: responses.RequestsMock, method: str) -> None:
    rsps.add(method, URL, status=301, headers={"Location": "http://elsewhere.test/"})
    session = _RecordingSession()

    with pytest.raises(ProviderError):
        http(session=session).request(method, URL, endpoint="thing")

    assert session.seen[0]["allow_redirects"] is False
    assert len(rsps.calls) == 1


def test_timeouts_can_be_set_per_client(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, json={})

    http(connect_timeout=0.5, read_timeout=2).request("GET", URL, endpoint="thing")

    assert rsps.calls[0].request.req_kwargs["timeout"] == (0.5, 2)


def test_shared_session_is_reused_and_keeps_no_cookies(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, URL, json={}, headers={"Set-Cookie": "sid=abc; Path=/"})

    http().request("GET", URL, endpoint="thing")
    http().request("GET", URL, endpoint="thing")

    assert shared_session() is shared_session()
    assert len(shared_session().cookies) == 0
    assert "Cookie" not in rsps.calls[1].request.headers


def test_session_pool_is_sized_for_a_threaded_worker() -> None:
    adapter = make_session().get_adapter("https://provider.test/")

    assert adapter.poolmanager.connection_pool_kw["maxsize"] >= 32  # type: ignore[attr-defined]
    assert adapter.max_retries.allowed_methods == frozenset({"GET", "PUT", "DELETE", "HEAD"})


def _clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_session_never_sends_a_netrc_password_to_a_provider(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    _clear_proxy_environment(monkeypatch)
    netrc = tmp_path / "netrc"  # type: ignore[operator]
    netrc.write_text("machine provider.test login someone password not-for-providers\n")
    monkeypatch.setenv("NETRC", str(netrc))
    rsps.add(responses.GET, URL, json={})

    ProviderHttp("Acme", session=make_session()).request("GET", URL, endpoint="thing")

    assert "Authorization" not in rsps.calls[0].request.headers


def test_session_keeps_a_ca_bundle_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corporate.pem")

    session = make_session()

    assert session.trust_env is False
    assert session.verify == "/etc/ssl/certs/corporate.pem"


def test_session_behind_a_proxy_still_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "sandbox.internal")

    session = make_session()

    assert session.trust_env is True  # so NO_PROXY is applied per host by requests


# --- real sockets (this suite's ports) ---------------------------------------------------------


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 8101-8109")


class _Script(BaseHTTPRequestHandler):
    """Answers from a shared list of (status, headers, body); an entry of None hangs until released."""

    script: list[tuple[int, dict[str, str], bytes] | None] = []
    release = threading.Event()
    seen: list[str] = []

    def _answer(self) -> None:
        type(self).seen.append(self.command)
        step = type(self).script.pop(0) if type(self).script else (200, {}, b"{}")
        if step is None:
            type(self).release.wait(5)
            return
        status, headers, body = step
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    port = _free_port()
    _Script.script, _Script.seen = [], []
    _Script.release = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Script)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    _Script.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_refused_connection_is_transient_and_never_sent() -> None:
    port = _free_port()  # nothing listens there

    with pytest.raises(ProviderError) as info:
        http(connect_timeout=0.5).request("GET", f"http://127.0.0.1:{port}/x", endpoint="thing")

    assert info.value.kind == ErrorKind.TRANSIENT
    assert info.value.outcome_unknown is False


def test_read_timeout_over_a_real_socket_leaves_the_outcome_unknown(server: str) -> None:
    _Script.script = [None]

    with pytest.raises(ProviderError) as info:
        http(read_timeout=0.2).request("POST", f"{server}/renew", endpoint="renew", json={"a": 1})

    assert info.value.outcome_unknown is True
    assert _Script.seen == ["POST"]


def test_real_gateway_error_is_retried_by_the_mounted_policy(server: str) -> None:
    _Script.script = [(503, {"Retry-After": "0"}, b"busy"), (200, {"Content-Type": "application/json"}, b'{"a":1}')]

    reply = http().request("GET", f"{server}/x", endpoint="thing")

    assert reply.json() == {"a": 1}
    assert _Script.seen == ["GET", "GET"]


def test_real_redirect_is_not_followed(server: str) -> None:
    _Script.script = [(302, {"Location": "/elsewhere"}, b"")]

    with pytest.raises(ProviderError) as info:
        http(session=make_session(retry=make_retry(backoff_factor=0))).request("GET", f"{server}/x", endpoint="t")

    assert "redirect" in info.value.message
    assert _Script.seen == ["GET"]


# --- the total deadline (real sockets) ------------------------------------------------------------


class _Trickler(BaseHTTPRequestHandler):
    """Answers 200 with a JSON body, a byte at a time: in the headers too when ``headers_too``."""

    # Kept alive, like a provider's server: the connection is reused for the next call.
    protocol_version = "HTTP/1.1"
    pause = 0.05
    headers_too = False
    body = b'{"accounts": ["' + b"x" * 200 + b'"]}'

    def do_GET(self) -> None:
        cls = type(self)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(cls.body)}\r\n\r\n".encode()
        )
        slow = head + cls.body if cls.headers_too else cls.body
        try:
            if not cls.headers_too:
                self.wfile.write(head)
            for index in range(len(slow)):
                self.wfile.write(slow[index : index + 1])
                time.sleep(cls.pause)
        except OSError:
            return  # the client gave up: exactly what the deadline is for

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def trickler() -> Iterator[str]:
    port = _free_port()
    _Trickler.pause, _Trickler.headers_too = 0.05, False
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Trickler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_reply_trickled_slower_than_the_total_deadline_is_given_up_on(trickler: str, where: str) -> None:
    # About 12 s of reply at one byte per 50 ms: every byte is far inside the
    # read timeout, so only a deadline on the whole call can end it.
    _Trickler.headers_too = where == "headers"
    started = time.monotonic()

    with pytest.raises(ProviderError) as info:
        http(read_timeout=5, total_timeout=0.5).request("GET", f"{trickler}/accounts", endpoint="accounts")

    elapsed = time.monotonic() - started
    assert info.value.kind == ErrorKind.TRANSIENT
    assert info.value.outcome_unknown is True
    assert "did not finish within the call's 0.5 s limit" in info.value.message
    assert 0.5 <= elapsed < 1.5  # the deadline, plus what a busy machine takes to notice


def test_a_slow_reply_that_ends_inside_the_total_deadline_is_read_whole(trickler: str) -> None:
    _Trickler.pause = 0.001
    client = http(session=make_session(), total_timeout=5)

    first = client.request("GET", f"{trickler}/accounts", endpoint="accounts")
    # Again on the kept-alive connection: each reply gets its own deadline.
    second = client.request("GET", f"{trickler}/accounts", endpoint="accounts")

    assert first.json() == second.json() == {"accounts": ["x" * 200]}


def test_a_retry_pause_that_would_outlast_the_total_deadline_is_not_waited(server: str) -> None:
    _Script.script = [(503, {"Retry-After": "2"}, b"busy"), (200, {}, b"{}")]
    started = time.monotonic()

    with pytest.raises(ProviderError) as info:
        http(total_timeout=1).request("GET", f"{server}/x", endpoint="thing")

    assert time.monotonic() - started < 1.5  # waiting out the 2 s would be the bug
    assert (info.value.status_code, info.value.retry_after) == (503, 2)
    assert _Script.seen == ["GET"]


def test_the_total_deadline_comes_from_settings_at_call_time(settings: Any) -> None:
    settings.PROVIDER_TOTAL_TIMEOUT = 0.25
    assert total_timeout() == 0.25

    settings.PROVIDER_TOTAL_TIMEOUT = "not a number"
    assert total_timeout() == 30.0
