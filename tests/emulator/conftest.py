"""Fixtures of the emulator tests: HTTP clients with each API's auth, and a callback receiver.

Everything goes over real HTTP on loopback: the emulator from the provider's own pytest
plugin (``captaindata_emulator``), plain httpx clients, and a stdlib HTTP server that
records the callbacks an async run posts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator import EmulatorClient


@pytest.fixture
def emu(captaindata_emulator: EmulatorClient) -> EmulatorClient:
    return captaindata_emulator


@pytest.fixture(scope="session")
def _clients(captaindata_emulator_session: EmulatorClient) -> Iterator[dict[str, httpx.Client]]:
    # One client each for the session: making an httpx client (and its SSL context) per test
    # costs more than the tests themselves.
    emu = captaindata_emulator_session
    v3_headers = {"Authorization": f"x-api-key {emu.api_key}", "x-project-id": emu.project_uid}
    clients = {
        "v3": httpx.Client(base_url=emu.v3_url, headers=v3_headers, timeout=10),
        "v4": httpx.Client(base_url=emu.v4_url, headers={"X-API-Key": emu.api_key}, timeout=10),
        "raw": httpx.Client(base_url=emu.base_url, timeout=10),
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def v3(emu: EmulatorClient, _clients: dict[str, httpx.Client]) -> httpx.Client:
    return _clients["v3"]


@pytest.fixture
def v4(emu: EmulatorClient, _clients: dict[str, httpx.Client]) -> httpx.Client:
    return _clients["v4"]


@pytest.fixture
def raw(emu: EmulatorClient, _clients: dict[str, httpx.Client]) -> httpx.Client:
    """No auth headers: for auth tests."""
    return _clients["raw"]


def is_error_body(body: Any, status: int) -> bool:
    keys = {"error_label", "error_scope", "error_ref", "message", "status_code", "params"}
    return isinstance(body, dict) and set(body) == keys and body["status_code"] == status


class Receiver:
    """A callback endpoint: records every POST (headers lowercased, JSON body), answers 200
    unless ``status_for`` says otherwise."""

    def __init__(self, keep_alive_seconds: float | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.dropped = 0  # requests on a connection idle past keep_alive_seconds
        self.lock = threading.Lock()
        self.status_for: Callable[[dict[str, Any]], int] = lambda body: 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # With keep_alive_seconds, connections persist (HTTP/1.1) and one idle longer than
            # that is closed when the next request arrives, unanswered: the moment a server's
            # keep-alive timer fires as a request comes in, made deterministic.
            protocol_version = "HTTP/1.1" if keep_alive_seconds else "HTTP/1.0"
            answered_at: float | None = None

            def do_POST(self) -> None:
                now = time.monotonic()
                if keep_alive_seconds and self.answered_at and now - self.answered_at > keep_alive_seconds:
                    with receiver.lock:
                        receiver.dropped += 1
                    self.close_connection = True
                    return
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver.lock:
                    receiver.calls.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                self.send_response(receiver.status_for(body))
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.answered_at = time.monotonic()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog of 5 makes concurrent callbacks wait 1 s
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/captaindata/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [c["body"] for c in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
