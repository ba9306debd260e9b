"""Fault classification over real HTTP: what may have acted is "outcome unknown" for a live
action with effects, what surely did not is retried or raised as a refusal.

The one classification is ``exceptions.classify`` (docs/retries.md has the table). The emulator
injects statuses after acting; a small loopback server stands for the connection-level cases the
emulator does not model (a keep-alive connection closed while idle, a reset after the request
was read).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import (
    OUTCOME_UNKNOWN,
    CaptainDataAPIError,
    CaptainDataOutcomeUnknown,
    CaptainDataTransportError,
    Fault,
    classify,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook
from tests.loopback_http import JsonHandler

FAST = RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=5.0)
MESSAGE = "linkedin-message-profile"
EXTRACT = "linkedin-extract-people"
PROFILE = {"linkedin_profile_url": "https://www.linkedin.com/in/person-00000"}
CONN_ID = "cd_transport_faults"
API_KEY = "test-key-not-real-0002"


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = captaindata_emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 1000
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    return captaindata_emulator


def _live_posts(emulator: Any, action: str) -> list[dict[str, Any]]:
    return emulator.requests(method="POST", path=f"/v4/actions/{action}/run/live")


# -- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "fault"),
    [
        (400, Fault.REFUSED),
        (401, Fault.REFUSED),
        (408, Fault.REFUSED),
        (422, Fault.REFUSED),
        (429, Fault.REFUSED),
        (301, Fault.REFUSED),
        (307, Fault.REFUSED),
        (303, Fault.MAY_HAVE_ACTED),  # "see other": the answer to a request that was processed
        (499, Fault.MAY_HAVE_ACTED),  # no standard meaning: cannot be classified
        (500, Fault.MAY_HAVE_ACTED),
        (501, Fault.MAY_HAVE_ACTED),
        (520, Fault.MAY_HAVE_ACTED),
        (524, Fault.MAY_HAVE_ACTED),
        (599, Fault.MAY_HAVE_ACTED),
        (600, Fault.MAY_HAVE_ACTED),
        (199, Fault.MAY_HAVE_ACTED),
    ],
)
def test_classification_of_statuses(status: int, fault: Fault) -> None:
    assert classify(CaptainDataAPIError(status, "x")) is fault


def test_classification_of_transport_failures() -> None:
    assert classify(CaptainDataTransportError("x", sent=False)) is Fault.NOT_SENT
    assert classify(CaptainDataTransportError("x", sent=True)) is Fault.MAY_HAVE_ACTED
    assert classify(RuntimeError("anything else")) is Fault.MAY_HAVE_ACTED


@pytest.mark.parametrize("status", [501, 505, 520, 522, 524, 599])
def test_any_5xx_after_a_message_was_sent_is_outcome_unknown(emulator: Any, status: int) -> None:
    """A gateway's 520/524 (the API did act) was a definite refusal: the retry sent again."""
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", status=status, after=True)
    hook = CaptainDataHook(retry_policy=FAST)
    with pytest.raises(CaptainDataOutcomeUnknown, match=OUTCOME_UNKNOWN):
        hook.run_action_live(MESSAGE, PROFILE)
    assert len(_live_posts(emulator, MESSAGE)) == 1
    assert len(hook.list_action_runs(action_name=MESSAGE, execution_mode="LIVE")) == 1


@pytest.mark.parametrize("status", [520, 524])
def test_any_5xx_is_outcome_unknown_on_the_async_path_too(emulator: Any, status: int) -> None:
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", status=status, after=True)
    hook = CaptainDataAsyncHook(retry_policy=FAST)
    with pytest.raises(CaptainDataOutcomeUnknown):
        asyncio.run(hook.run_action_live(MESSAGE, {"input": PROFILE}))
    assert len(_live_posts(emulator, MESSAGE)) == 1


@pytest.mark.parametrize("status", [520, 524])
def test_any_5xx_to_a_read_is_retried(emulator: Any, status: int) -> None:
    emulator.add_fault("POST", f"/v4/actions/{EXTRACT}/run/live", status=status)
    assert CaptainDataHook(retry_policy=FAST).run_action_live(EXTRACT, PROFILE)
    assert [r["status"] for r in _live_posts(emulator, EXTRACT)] == [status, 200]


def test_a_documented_refusal_of_a_message_is_not_outcome_unknown(emulator: Any) -> None:
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", status=422)
    with pytest.raises(CaptainDataAPIError) as info:
        CaptainDataHook(retry_policy=FAST).run_action_live(MESSAGE, PROFILE)
    assert not isinstance(info.value, CaptainDataOutcomeUnknown) and info.value.status_code == 422
    assert len(_live_posts(emulator, MESSAGE)) == 1


# -- connections: never opened, closed while idle, dropped after the request ------------------


class _KeepAliveServer:
    """HTTP/1.1 on loopback, keep-alive, closing a connection idle for ``idle_close`` seconds.

    ``reset_after_read``: the POSTs (counted from 1) that are read in full and then answered
    by a TCP reset instead of an answer, as a server dying mid-request would."""

    def __init__(self, idle_close: float, reset_after_read: tuple[int, ...] = ()) -> None:
        self.posts = 0
        self.connections = 0
        outer = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_close  # an idle keep-alive connection is closed (FIN) after this

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts += 1
                if outer.posts in reset_after_read:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                self.send_json(json.dumps({"sent": outer.posts}).encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _use(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    conn = {
        "conn_type": "captaindata",
        "password": API_KEY,
        "extra": {"v4_base_url": f"{url}/v4", "rate_limit_per_second": "1000"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def keepalive(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    servers: list[_KeepAliveServer] = []

    def start(**kwargs: Any) -> _KeepAliveServer:
        server = _KeepAliveServer(**kwargs)
        servers.append(server)
        _use(monkeypatch, server.url)
        return server

    yield start
    for server in servers:
        server.close()


def test_sync_keepalive_connection_closed_while_idle_does_not_lose_a_message(keepalive: Any) -> None:
    """Settles the suspicion that a stale keep-alive connection's reset counts as "sent" and
    loses a message that never left: a connection the server closed while idle is seen closed
    before reuse, and the message goes out once on a new connection."""
    server = keepalive(idle_close=0.1)
    hook = CaptainDataHook(CONN_ID, retry_policy=FAST)
    assert hook.run_action_live(MESSAGE, PROFILE) == {"sent": 1}
    time.sleep(0.5)  # the server has closed the idle connection by now
    assert hook.run_action_live(MESSAGE, PROFILE) == {"sent": 2}
    assert (server.posts, server.connections) == (2, 2)


def test_async_keepalive_connection_closed_while_idle_does_not_lose_a_message(keepalive: Any) -> None:
    server = keepalive(idle_close=0.1)

    async def two_messages() -> list[Any]:
        hook = CaptainDataAsyncHook(CONN_ID, retry_policy=FAST)
        first = await hook.run_action_live(MESSAGE, {"input": PROFILE})
        await asyncio.sleep(0.5)
        second = await hook.run_action_live(MESSAGE, {"input": PROFILE})
        await hook.aclose()
        return [first.data, second.data]

    assert asyncio.run(two_messages()) == [{"sent": 1}, {"sent": 2}]
    assert (server.posts, server.connections) == (2, 2)


def test_sync_reset_after_the_request_was_read_is_outcome_unknown(keepalive: Any) -> None:
    """The other side of the same question: a kept-alive connection that fails once the
    request was written may have carried it, so the message is not sent again."""
    server = keepalive(idle_close=5.0, reset_after_read=(2,))
    hook = CaptainDataHook(CONN_ID, retry_policy=FAST)
    hook.run_action_live(MESSAGE, PROFILE)
    with pytest.raises(CaptainDataOutcomeUnknown) as info:
        hook.run_action_live(MESSAGE, PROFILE)
    assert server.posts == 2
    assert "after the request was sent" in str(info.value)


def test_async_reset_after_the_request_was_read_is_outcome_unknown(keepalive: Any) -> None:
    server = keepalive(idle_close=5.0, reset_after_read=(2,))

    async def two_messages() -> None:
        hook = CaptainDataAsyncHook(CONN_ID, retry_policy=FAST)
        try:
            await hook.run_action_live(MESSAGE, {"input": PROFILE})
            await hook.run_action_live(MESSAGE, {"input": PROFILE})
        finally:
            await hook.aclose()

    with pytest.raises(CaptainDataOutcomeUnknown):
        asyncio.run(two_messages())
    assert server.posts == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_names_host_cause_and_connection_and_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    _use(monkeypatch, url)
    with pytest.raises(CaptainDataTransportError) as info:
        CaptainDataHook(CONN_ID, retry_policy=FAST).run_action_live(MESSAGE, PROFILE)
    error = info.value
    assert not isinstance(error, CaptainDataOutcomeUnknown) and classify(error) is Fault.NOT_SENT
    assert f"no connection to {url} (connection refused" in str(error)
    assert repr(CONN_ID) in str(error)

    with pytest.raises(CaptainDataTransportError) as async_info:
        asyncio.run(
            CaptainDataAsyncHook(CONN_ID, retry_policy=FAST).run_action_live(MESSAGE, {"input": PROFILE})
        )
    assert f"no connection to {url} (connection refused" in str(async_info.value)
    assert repr(CONN_ID) in str(async_info.value)


def test_unresolvable_host_is_named_as_a_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    # .invalid never resolves (RFC 2606): no query leaves for a real name server's answer.
    _use(monkeypatch, "http://captaindata-api.invalid")
    with pytest.raises(CaptainDataTransportError) as info:
        CaptainDataHook(CONN_ID, retry_policy=FAST).get_workspaces()
    assert "no connection to http://captaindata-api.invalid (DNS:" in str(info.value)
    with pytest.raises(CaptainDataTransportError) as async_info:
        asyncio.run(CaptainDataAsyncHook(CONN_ID, retry_policy=FAST).get_run("v4", "run"))
    assert "no connection to http://captaindata-api.invalid (DNS:" in str(async_info.value)


def test_wrong_key_names_the_connection(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = emulator.connection_json()
    conn["password"] = "test-wrong-key-not-real"
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    with pytest.raises(CaptainDataAPIError) as info:
        CaptainDataHook(CONN_ID, retry_policy=FAST).get_workspaces()
    assert info.value.status_code == 401
    assert f"Airflow connection {CONN_ID!r}" in str(info.value)
    assert "test-wrong-key-not-real" not in str(info.value)


# -- error texts: a callback URL's token is scrubbed as the key is ------------------------------

TOKEN = "f" * 24 + "0123456789abcdef" * 2 + "e" * 8  # the shape of a callback token, not a real one
CALLBACK_URL = f"https://airflow.example/captaindata/callbacks/v1/launch-key-0001/1999999999/{TOKEN}"
HEADER_TOKEN = "test-header-token-not-real-0005"


class _EchoServer:
    """Answers every POST with an error echoing the request body (as some APIs and gateways
    do): as plain text (400) or inside the documented v4 error body (422)."""

    def __init__(self) -> None:
        self.as_json = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if outer.as_json:
                    sent = json.loads(body)
                    answer = json.dumps(
                        {
                            "error_label": "INVALID_CALLBACK",
                            "message": f"callback {sent['callback']['url']} is not reachable",
                            "params": {"callback": sent["callback"]},
                        }
                    ).encode()
                    status = 422
                else:
                    answer, status = f"Bad request: {body}".encode(), 400
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_error_echoing_the_callback_url_shows_no_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, as_json: bool
) -> None:
    server = _EchoServer()
    server.as_json = as_json
    _use(monkeypatch, server.url)
    try:
        with pytest.raises(CaptainDataAPIError) as info:
            CaptainDataHook(CONN_ID, retry_policy=FAST).run_action_async(
                EXTRACT, [PROFILE], callback_url=CALLBACK_URL, callback_headers={"X-Token": HEADER_TOKEN}
            )
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    error = info.value
    texts = [str(error), repr(error), error.message, json.dumps(error.params), caplog.text]
    for secret in (TOKEN, HEADER_TOKEN, API_KEY):
        assert all(secret not in text for text in texts)
    assert "***" in error.message


# -- the case end to end: a fan-out of messages with task retries --------------------


@pytest.mark.usefixtures("airflow_db")
def test_fan_out_message_answered_524_after_acting_is_not_sent_again_by_a_task_retry(
    emulator: Any,
) -> None:
    """Observed before: sends ``[524, 200]`` for input 1 (the 524 counted as a refusal, its
    record was dropped and the task retry sent the message again)."""
    from datetime import timedelta

    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from tests.airflow_helpers import make_dag, run_dag, task_states

    emulator.add_fault(
        "POST", f"/v4/actions/{MESSAGE}/run/live", match_body="person-00001", status=524, after=True
    )
    inputs = [{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}"} for i in range(3)]
    with make_dag("transport_fan_out_524") as dag:
        CaptainDataRunActionOperator(
            task_id="message", action=MESSAGE, inputs=inputs, retries=1, retry_delay=timedelta(0)
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"message": "failed"}  # input 1 stays outcome unknown
    sent = [c["body"]["input"]["linkedin_profile_url"] for c in _live_posts(emulator, MESSAGE)]
    assert sorted(sent) == sorted(i["linkedin_profile_url"] for i in inputs)
