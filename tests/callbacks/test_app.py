"""The receiver over real HTTP (uvicorn on loopback): what is stored, and what is refused."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks.app import create_app
from airflow_provider_captaindata.callbacks.storage import page_digest
from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from tests.callbacks.conftest import LAUNCH_KEY, SECRET, Receiver, ServerThread, callback_body


def post(client: httpx.Client, url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(url, content=content, headers={"content-type": "application/json"})


def test_health(receiver: Receiver, client: httpx.Client) -> None:
    answer = client.get(f"{receiver.base_url}/health")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_valid_callback_is_stored_before_the_answer(receiver: Receiver, client: httpx.Client) -> None:
    body = callback_body(rows=3, custom_data={"crm_id": 7})
    raw = json.dumps(body).encode()
    answer = post(client, receiver.url(), raw)
    assert answer.status_code == 200, answer.text
    batch = body["run"]["batch_uid"]
    assert answer.json() == {"stored": batch}
    page = receiver.folder / LAUNCH_KEY / body["run"]["run_uid"] / f"{batch}.{page_digest(body)}.json"
    assert receiver.stored_files() == [page]
    assert page.read_bytes() == raw  # the whole body, as sent


def test_duplicate_overwrites(receiver: Receiver, client: httpx.Client) -> None:
    body = callback_body(rows=2)
    for _ in range(3):
        assert post(client, receiver.url(), body).status_code == 200
    assert len(receiver.stored_files()) == 1


def test_trailing_slash_and_query_are_accepted(receiver: Receiver, client: httpx.Client) -> None:
    # The operator may tag the URL with a query parameter; the path alone carries the token.
    answer = post(client, receiver.url() + "/?airflow_launch=" + LAUNCH_KEY, callback_body())
    assert answer.status_code == 200


def _forged_urls(receiver: Receiver) -> list[tuple[str, int]]:
    good = receiver.url()
    key, expires, token = good.rsplit("/", 3)[1:]
    other_secret = callback_url_for(receiver.base_url, "not-the-secret-of-this-receiver", LAUNCH_KEY)
    expired = receiver.url(now=time.time() - 8 * 86400)
    tampered_key = f"{receiver.base_url}/v1/{'f' * 24}/{expires}/{token}"
    later = f"{receiver.base_url}/v1/{key}/{int(expires) + 1}/{token}"
    return [
        (other_secret, 403),
        (expired, 403),
        (tampered_key, 403),
        (later, 403),
        (f"{receiver.base_url}/v1/{key}/{expires}/{token[:-2]}", 401),  # truncated token
        (f"{receiver.base_url}/v1/{key}/{expires}", 401),  # no token
        (f"{receiver.base_url}/v1/{key}", 401),
        (f"{receiver.base_url}/v1/", 401),
        (f"{receiver.base_url}/v1/{key.upper()}/{expires}/{token}", 401),  # not 24 lowercase hex
        (f"{receiver.base_url}/v1/..%2F..%2Fetc/{expires}/{token}", 401),
        (f"{receiver.base_url}/v1/{key}/{expires}/{token}/extra", 401),
    ]


def test_forged_or_expired_tokens_write_nothing(
    logged_receiver: Receiver, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = logged_receiver
    caplog.set_level(logging.INFO)
    cases = _forged_urls(receiver)
    for url, status in cases:
        answer = post(client, url, callback_body())
        assert answer.status_code == status, (url, answer.text)
    assert receiver.stored_files() == []
    assert not receiver.folder.exists()
    # The refusals are logged, but no token (good or forged) appears in any log line,
    # uvicorn's access log included.
    # (The test's own HTTP client logs the URLs it calls: not the receiver's logs.)
    server_log = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "Refused a callback" in server_log
    for url, _ in cases:
        token = url.rsplit("/", 1)[-1]
        if len(token) > 30:
            assert token not in server_log
    assert f"/v1/{LAUNCH_KEY}/REDACTED" in server_log


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"results": []}', "'run'"),
        (
            json.dumps({"run": {"run_uid": "abc", "batch_uid": str(uuid.uuid4()), "status": "RUNNING"}}),
            "run_uid",
        ),
        (json.dumps(callback_body(batch_uid="../../../../tmp/evil")), "batch_uid"),
        (json.dumps(callback_body(batch_uid="{" + str(uuid.uuid4()) + "}")), "batch_uid"),
        (json.dumps({**callback_body(), "results": {"a": 1}}), "'results'"),
        (json.dumps({**callback_body(), "results": [1, 2]}), "'results'"),
        (json.dumps({**callback_body(), "results_count": -1}), "results_count"),
        (json.dumps({**callback_body(), "custom_data": "x"}), "custom_data"),
        (json.dumps({**callback_body(), "run": {**callback_body()["run"], "status": None}}), "status"),
        (b"[" * 50_000, "not JSON"),
    ],
)
def test_malformed_bodies_are_400_and_write_nothing(
    receiver: Receiver, client: httpx.Client, body: Any, message: str
) -> None:
    raw = body if isinstance(body, bytes) else body.encode()
    answer = post(client, receiver.url(), raw)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    assert receiver.stored_files() == []


def test_oversized_bodies_are_413(receiver: Receiver, client: httpx.Client) -> None:
    big = json.dumps(callback_body(rows=3000)).encode()  # ~150 KB, the fixture allows 64 KiB
    assert len(big) > 64 * 1024
    assert post(client, receiver.url(), big).status_code == 413  # refused on Content-Length

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    answer = client.post(receiver.url(), content=chunks())
    assert answer.status_code == 413
    assert receiver.stored_files() == []
    # A body just under the limit is still fine.
    assert post(client, receiver.url(), callback_body(rows=100)).status_code == 200


def test_get_on_a_callback_url_is_not_allowed(receiver: Receiver, client: httpx.Client) -> None:
    assert client.get(receiver.url()).status_code == 405


def test_settings_from_the_connection_lazily(
    tmp_path: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "from-conn"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CD_CALLBACKS_TEST",
        json.dumps(
            {
                "conn_type": "captaindata",
                "password": "api-key-not-needed-here",
                "extra": {"callback_secret": SECRET, "extra__captaindata__callback_storage": folder.as_uri()},
            }
        ),
    )
    server = ServerThread(create_app(conn_id="cd_callbacks_test"))
    try:
        url = callback_url_for(server.base_url, SECRET, LAUNCH_KEY)
        assert post(client, url, callback_body()).status_code == 200
        assert len([p for p in folder.rglob("*.json")]) == 1
    finally:
        server.stop()


def test_unconfigured_receiver_answers_503_and_writes_nothing(tmp_path: Path, client: httpx.Client) -> None:
    server = ServerThread(create_app(secret=SECRET, conn_id="no_such_connection_here"))
    try:
        url = callback_url_for(server.base_url, SECRET, LAUNCH_KEY)
        assert post(client, url, callback_body()).status_code == 503
        assert client.get(f"{server.base_url}/health").status_code == 200
    finally:
        server.stop()


def test_callbacks_in_flight_are_checked_in_one_thread(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check holds the body's text, as large as the body. In whichever worker thread was
    # free, each of up to max_in_flight threads kept that much in its own malloc arena after
    # the callback: with 8 in flight the API server grew about 0.5 MiB a callback more than
    # with 2 (benchmark 7's server). Checks run under the GIL: one thread loses nothing.
    from airflow_provider_captaindata.callbacks import app as app_module

    checked_in: set[int] = set()
    scan = app_module.scan_callback

    def slow_scan(data: bytearray) -> Any:
        checked_in.add(threading.get_ident())
        time.sleep(0.05)  # the callbacks overlap: each would take a worker thread of its own
        return scan(data)

    monkeypatch.setattr(app_module, "scan_callback", slow_scan)
    bodies = [callback_body(rows=3) for _ in range(8)]

    def send(body: dict[str, Any]) -> int:
        with httpx.Client(timeout=30) as http:
            return post(http, receiver.url(), body).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        assert list(pool.map(send, bodies)) == [200] * len(bodies)
    assert len(receiver.stored_files()) == len(bodies)
    assert len(checked_in) == 1
