"""Hostile answers to both transports (issue 22, attacks of an independent review that held,
kept as regression tests): a redirect of any kind never carries the key to its target, and a
small Content-Length in front of a large chunked body does not get past the response cap."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_captaindata.client.policy import ApiRequest, RetryPolicy
from airflow_provider_captaindata.client.transport import SyncTransport
from airflow_provider_captaindata.client.transport_async import AsyncTransport
from airflow_provider_captaindata.exceptions import CaptainDataError

ONE_TRY = RetryPolicy(attempts=1, read_timeout=10.0, connect_timeout=2.0, max_response_bytes=1024 * 1024)
KEY = "test-key-not-real-0022"


def send_both(request: ApiRequest) -> list[str]:
    """Send with the sync and the async client; the error type each raised ("" when none)."""
    outcomes = []
    try:
        SyncTransport(ONE_TRY).send(request)
        outcomes.append("")
    except CaptainDataError as exc:
        outcomes.append(type(exc).__name__)

    async def once() -> None:
        try:
            await AsyncTransport(ONE_TRY).send(request)
            outcomes.append("")
        except CaptainDataError as exc:
            outcomes.append(type(exc).__name__)
        finally:
            await AsyncTransport.aclose()

    asyncio.run(once())
    return outcomes


class Server:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def evil() -> Iterator[tuple[Server, list[str | None]]]:
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("X-API-Key"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = Server(Handler)
    yield server, seen
    server.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_redirect_from_the_api_never_carries_the_key(
    evil: tuple[Server, list[str | None]], status: int, method: str
) -> None:
    target, seen = evil

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Location", f"http://127.0.0.1:{target.port}/v4/next")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    api = Server(Api)
    try:
        request = ApiRequest(
            method, f"http://127.0.0.1:{api.port}/v4/runs", {"X-API-Key": KEY}, secrets=(KEY,)
        )
        assert send_both(request) == ["CaptainDataAPIError", "CaptainDataAPIError"]
    finally:
        api.close()
    assert seen == []


def _raw_server(answer: bytes, body_chunks: int) -> tuple[socket.socket, threading.Thread]:
    """Answers each connection with ``answer`` then ``body_chunks`` chunks of 64 KiB (chunked)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(65536)
            try:
                conn.sendall(answer)
                chunk = b"x" * 65536
                for _ in range(body_chunks):
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                conn.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the client gave up: what a cap does
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_a_small_content_length_with_a_huge_chunked_body_is_not_read_whole() -> None:
    # The async client reads an answer whole when Content-Length is within the cap: a chunked
    # body behind a small Content-Length must not get through that shortcut.
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    listener, _thread = _raw_server(head, 128)  # 8 MiB against a 1 MiB cap
    try:
        request = ApiRequest(
            "GET", f"http://127.0.0.1:{listener.getsockname()[1]}/v4/runs", {"X-API-Key": KEY}
        )
        outcomes = send_both(request)
    finally:
        listener.close()
    assert "" not in outcomes, outcomes
