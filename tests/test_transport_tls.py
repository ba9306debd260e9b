"""Both clients trust the same certificates (``transport.trusted_certificates``): the docs'
``SSL_CERT_FILE`` works for the sync client too (requests ignored it), and an untrusted
certificate is named as such, with the host and the connection. An HTTPS server on loopback
with a throwaway authority (``emulator.tls.make_local_tls``)."""

from __future__ import annotations

import asyncio
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.emulator.tls import make_local_tls
from airflow_provider_captaindata.exceptions import CaptainDataTransportError, Fault, classify
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook
from tests.loopback_http import JsonHandler

CONN_ID = "cd_transport_tls"
ONE_TRY = RetryPolicy(attempts=1, connect_timeout=5.0, read_timeout=5.0)
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tls = make_local_tls(tmp_path_factory.mktemp("tls"))

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            self.send_json(b"[]")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_port}", tls.ca_file
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def origin(https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    url, _ = https
    conn = {
        "conn_type": "captaindata",
        "password": "test-key-not-real-0006",
        "extra": {"v4_base_url": f"{url}/v4"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return url


def _sync() -> Any:
    return CaptainDataHook(CONN_ID, retry_policy=ONE_TRY).list_action_runs()


def _async() -> Any:
    async def call() -> Any:
        hook = CaptainDataAsyncHook(CONN_ID, retry_policy=ONE_TRY)
        try:
            return await hook.list_action_runs()
        finally:
            await hook.aclose()

    return asyncio.run(call())


CLIENTS = {"sync": _sync, "async": _async}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_both_clients_trust_the_same_variables(
    origin: str, https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, client: str, variable: str
) -> None:
    monkeypatch.setenv(variable, str(https[1]))
    assert CLIENTS[client]() == []


@pytest.mark.parametrize("client", list(CLIENTS))
def test_an_untrusted_certificate_is_named_with_host_and_connection(origin: str, client: str) -> None:
    with pytest.raises(CaptainDataTransportError) as info:
        CLIENTS[client]()
    text = str(info.value)
    assert f"no connection to {origin} (TLS: the server's certificate is not trusted" in text
    assert repr(CONN_ID) in text
    assert classify(info.value) is Fault.NOT_SENT  # the handshake precedes the request
