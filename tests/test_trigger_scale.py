"""Hundreds of triggers in one event loop over TLS: connections are bounded and reused.

A local TLS status server (``tests/benchmarks/status_server.py``, in the test's own loop)
counts the connections it accepts, one per TLS handshake. Before the fix, the 300 triggers
below opened 100 connections at once and then a new one for nearly every poll (httpcore
closed idle connections whenever more than 50 existed). Counts, not timings: speed is
``make bench``'s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport_async import AsyncTransport
from airflow_provider_captaindata.emulator.tls import make_local_tls
from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger
from tests.benchmarks.status_server import server_context, start

TRIGGERS = 300
POLLS = 3  # status reads until each run is final: two "running", then "finished"
CONN_ID = "captaindata_tls"


async def _wait_all(context: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], int]:
    async def wait(uid: str) -> dict[str, Any]:
        trigger = CaptainDataRunTrigger(run_uid=uid, captaindata_conn_id=CONN_ID, poll_interval=0.2)
        async for event in trigger.run():
            return event.payload
        raise AssertionError(f"trigger of {uid} ended without an event")

    server, stats, url = await start(context, POLLS)
    conn = {
        "conn_type": "captaindata",
        "password": "k" * 32,
        "extra": {"project_uid": "p1", "v3_base_url": f"{url}/v3"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    async with server:
        # All started together, as a mapped task's deferrals reach a triggerer.
        events = await asyncio.wait_for(asyncio.gather(*(wait(f"run-{i:03d}") for i in range(TRIGGERS))), 60)
    return list(events), stats.connections


def test_triggers_over_tls_share_a_bounded_pool_of_reused_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = make_local_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # the client trusts the test CA
    events, connections = asyncio.run(_wait_all(server_context(tls.cert_file, tls.key_file), monkeypatch))

    assert [e["status"] for e in events] == ["success"] * TRIGGERS
    assert [e["run_uid"] for e in events] == [f"run-{i:03d}" for i in range(TRIGGERS)]
    assert [e["run_status"] for e in events] == ["finished"] * TRIGGERS
    # 900 polls: at most one handshake per pooled connection, whatever the trigger count.
    assert connections <= AsyncTransport.POOL_SIZE, connections


def test_the_loops_session_is_closed_when_the_loop_shuts_down() -> None:
    async def pool() -> Any:
        return AsyncTransport()._pool()

    used = asyncio.run(pool())
    # asyncio.run closed it (no "Unclosed client session" at garbage collection).
    assert used.session.closed


def test_requests_go_through_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy variables are read once per origin (not by aiohttp on every request): a local
    # forward proxy must still see the request, and NO_PROXY must still bypass it.
    from airflow_provider_captaindata.client.transport import ApiRequest

    seen: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode().strip()
        while (await reader.readline()).strip():
            pass
        seen.append(request_line)
        body = b'{"via": "proxy"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def main() -> tuple[Any, Any]:
        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
        async with server:
            transport = AsyncTransport()
            answer = await transport.send(ApiRequest("GET", "http://api.invalid/v3/jobs/1", headers={}))
            bypassed = transport._pool().proxy_for("http://bypassed.invalid/v3/jobs/1")
        return answer.data, bypassed

    data, bypassed = asyncio.run(main())
    assert data == {"via": "proxy"}
    assert seen == ["GET http://api.invalid/v3/jobs/1 HTTP/1.1"]
    assert bypassed == (None, None)
