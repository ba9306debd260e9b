"""Answers are read under a size cap, after decompression, by both clients (issue 22): an
oversized answer or a decompression bomb is refused with ``CaptainDataResponseTooLarge``
without being held whole, and is not retried. A loopback server plays the hostile API."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.server
import json
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import (
    CaptainDataResponseTooLarge,
    CaptainDataTransportError,
    Fault,
    classify,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

CONN_ID = "cd_response_size"
LIMIT = 1024 * 1024
POLICY = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.02, max_response_bytes=LIMIT)
BOMB_BYTES = 256 * 1024 * 1024  # inflates to 256 MiB from about 250 KB


def _bomb() -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    zeros = bytes(1024 * 1024)
    parts = [squeeze.compress(zeros) for _ in range(BOMB_BYTES // len(zeros))]
    return b"".join(parts) + squeeze.flush()


def _rows(size: int) -> bytes:
    row = json.dumps({"name": "x" * 100}).encode()
    count = size // (len(row) + 1)
    return b"[" + b",".join([row] * count) + b"]"


ANSWERS: dict[str, tuple[dict[str, str], bytes]] = {
    "small-gzip": ({"Content-Encoding": "gzip"}, gzip.compress(b'[{"name": "x"}]')),
    "small-deflate": ({"Content-Encoding": "deflate"}, zlib.compress(b'[{"name": "x"}]')),
    "oversized": ({}, _rows(2 * LIMIT)),
    "oversized-no-length": ({"Connection": "close"}, _rows(2 * LIMIT)),
    "oversized-gzip": ({"Content-Encoding": "gzip"}, gzip.compress(_rows(2 * LIMIT))),
    "bomb": ({"Content-Encoding": "gzip"}, _bomb()),
    "brotli": ({"Content-Encoding": "br"}, b"\x0b\x02\x80[]\x03"),
    "cut-gzip": ({"Content-Encoding": "gzip"}, gzip.compress(b'[{"name": "x"}]')[:-12]),
}


class _Api:
    def __init__(self) -> None:
        self.mode = ""
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # and POST: the async client's call is a live read
                outer.requests += 1
                headers, body = ANSWERS[outer.mode]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Connection" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)  # the client may stop reading: what is tested

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server() -> Iterator[_Api]:
    api = _Api()
    yield api
    api.httpd.shutdown()
    api.httpd.server_close()


@pytest.fixture
def api(server: _Api, monkeypatch: pytest.MonkeyPatch) -> _Api:
    conn = {
        "conn_type": "captaindata",
        "password": "test-key-not-real-0004",
        "extra": {"v4_base_url": f"{server.url}/v4"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    server.requests = 0
    return server


def _sync(api: _Api, mode: str) -> Any:
    api.mode = mode
    return CaptainDataHook(CONN_ID, retry_policy=POLICY).list_identities()


def _async(api: _Api, mode: str) -> Any:
    api.mode = mode

    async def call() -> Any:
        hook = CaptainDataAsyncHook(CONN_ID, retry_policy=POLICY)
        try:
            search = {
                "linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=x"
            }
            return (await hook.run_action_live("linkedin-search-people", {"input": search})).data
        finally:
            await hook.aclose()

    return asyncio.run(call())


CLIENTS = {"sync": _sync, "async": _async}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("mode", ["small-gzip", "small-deflate"])
def test_compressed_answers_are_still_read(api: _Api, client: str, mode: str) -> None:
    assert CLIENTS[client](api, mode) == [{"name": "x"}]


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("mode", ["oversized", "oversized-no-length", "oversized-gzip", "bomb"])
def test_an_answer_past_the_cap_is_refused_and_not_retried(api: _Api, client: str, mode: str) -> None:
    with pytest.raises(CaptainDataResponseTooLarge) as info:
        CLIENTS[client](api, mode)
    assert f"max_response_bytes ({LIMIT} bytes" in str(info.value)
    assert classify(info.value) is Fault.MAY_HAVE_ACTED  # a live action's answer: outcome unknown
    assert api.requests == 1


@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_decompression_bomb_is_never_inflated_in_memory(api: _Api, client: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CaptainDataResponseTooLarge):
            CLIENTS[client](api, "bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * LIMIT, f"peak {peak} bytes while refusing a {BOMB_BYTES}-byte bomb"


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("mode", ["brotli", "cut-gzip"])
def test_an_encoding_not_asked_for_or_a_cut_stream_is_a_transport_error(
    api: _Api, client: str, mode: str
) -> None:
    with pytest.raises(CaptainDataTransportError) as info:
        CLIENTS[client](api, mode)
    assert not isinstance(info.value, CaptainDataResponseTooLarge)
    assert info.value.sent
