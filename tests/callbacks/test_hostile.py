"""The receiver tried as an attacker would, over real HTTP: every method, wrong tokens, oversized,
slow and deeply nested bodies, floods. All refused, nothing stored, and no token in any log line
(uvicorn's access log included)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks import app as app_module
from airflow_provider_captaindata.callbacks import tokens
from airflow_provider_captaindata.callbacks.app import NotConfigured, create_app
from airflow_provider_captaindata.callbacks.redact import redacted
from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.callbacks.webhooks import webhook_url_for
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from tests.callbacks.conftest import LAUNCH_KEY, SECRET, Receiver, ServerThread, callback_body

METHODS = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")
OTHER_SECRET = "another-secret-of-enough-strength-42"


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    # The test's own HTTP client logs the URLs it calls: not the receiver's logs.
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))


def token_parts(url: str) -> list[str]:
    """The secret parts of a callback or webhook URL (and a prefix of the token, for truncation)."""
    token = url.rstrip("/").rsplit("/", 1)[1]
    return [token, token[:20]]


def urls(receiver: Receiver) -> list[str]:
    callback = receiver.url()
    webhook = webhook_url_for(receiver.base_url, SECRET)
    return [
        callback,
        callback + "/",
        callback + "/extra/segment",
        callback + "?token=x",
        webhook,
        webhook + "/more",
        receiver.base_url + "/v1/" + callback.split("/v1/", 1)[1].replace(LAUNCH_KEY, "not-a-launch-key"),
        receiver.base_url + "/unknown/" + callback.split("/v1/", 1)[1],
        receiver.base_url + "/V1/" + callback.split("/v1/", 1)[1],
        receiver.base_url + "/health/" + callback.rsplit("/", 1)[1],
    ]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_refused_and_no_token_reaches_a_log(
    logged_receiver: Receiver, client: httpx.Client, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    secrets = [part for url in urls(logged_receiver) for part in token_parts(url)]
    with caplog.at_level(logging.DEBUG):
        for url in urls(logged_receiver):
            answer = client.request(method, url, content=json.dumps(callback_body()).encode())
            assert answer.status_code in (401, 403, 404, 405), (method, url, answer.status_code)
    text = server_log(caplog)
    assert f'"{method} /' in text  # uvicorn's access log did log these requests
    for secret in secrets:
        assert secret not in text, f"{method}: a token reached the log"
    assert logged_receiver.stored_files() == []


def test_redaction_keeps_an_allow_list_only() -> None:
    assert redacted("/health") == "/health"
    assert redacted(f"/v1/{LAUNCH_KEY}/123/tok") == f"/v1/{LAUNCH_KEY}/REDACTED"
    assert redacted(f"/v1/{LAUNCH_KEY}") == f"/v1/{LAUNCH_KEY}"
    assert redacted("/v1/ABC/123/tok") == "/v1/REDACTED"
    assert redacted("/webhooks/v3/crm/tok") == "/webhooks/v3/crm/REDACTED"
    assert redacted("/webhooks/v3/Bad/tok") == "/webhooks/v3/REDACTED"
    assert redacted("/anything/tok") == "/REDACTED"
    assert redacted("/") == "/REDACTED"


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda url: url[:-1] + ("A" if url[-1] != "A" else "B"), 403),  # one character flipped
        (lambda url: url.rsplit("/", 1)[0] + "/" + "é" * 43, 401),  # not ASCII
        (lambda url: url + "A" * 4096, 401),  # long
        (lambda url: url.rsplit("/", 1)[0], 401),  # no token
        (lambda url: url.replace(LAUNCH_KEY, "f" * 24), 403),  # another launch's folder
        (lambda url: callback_url_for(url.split("/v1/")[0], OTHER_SECRET, LAUNCH_KEY), 403),
        (lambda url: callback_url_for(url.split("/v1/")[0], SECRET, LAUNCH_KEY, ttl_seconds=1, now=0), 403),
    ],
)
def test_wrong_tokens_store_nothing(
    logged_receiver: Receiver,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    mutate: Any,
    status: int,
) -> None:
    url = mutate(logged_receiver.url())
    with caplog.at_level(logging.DEBUG):
        answer = client.post(url, content=json.dumps(callback_body()).encode())
    assert answer.status_code == status
    assert logged_receiver.stored_files() == []
    text = server_log(caplog)
    for secret in token_parts(url):
        assert secret not in text


def test_hostile_bodies_are_refused(receiver: Receiver, client: httpx.Client) -> None:
    url = receiver.url()
    nested = b'{"run": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    bodies = [
        nested,
        b"[" * 60_000,  # unterminated and deep
        b'{"run": {"run_uid": "x", "batch_uid": "y", "status": "s"}}',
        json.dumps({**callback_body(), "results": "not a list"}).encode(),
        json.dumps({**callback_body(), "results": [[1]]}).encode(),
        json.dumps({**callback_body(), "results_count": -1}).encode(),
        b"\xff\xfe not utf-8",
        b"",
    ]
    for body in bodies:
        assert client.post(url, content=body).status_code == 400
    assert client.post(url, content=b"x" * (64 * 1024 + 1)).status_code == 413
    assert receiver.stored_files() == []


def test_replays_of_one_page_store_one_file(receiver: Receiver, client: httpx.Client) -> None:
    body = callback_body(rows=3)
    for status in ("RUNNING", "SUCCESS", "RUNNING"):
        body["run"]["status"] = status
        assert client.post(receiver.url(), json=body).status_code == 200
    assert len(receiver.stored_files()) == 1


@pytest.fixture
def slow_receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "slow"
    app = create_app(
        secret=SECRET,
        storage=folder.as_uri(),
        max_body_bytes=64 * 1024,
        max_in_flight=1,
        body_timeout_seconds=1.0,
        slot_wait_seconds=0.2,
    )
    server = ServerThread(app)
    try:
        yield server.base_url, folder
    finally:
        server.stop()


def _start_slow_post(base_url: str, url: str) -> socket.socket:
    """A POST whose body never comes: it holds a slot until the body timeout."""
    port = int(base_url.rsplit(":", 1)[1])
    path = url.split(base_url, 1)[1]
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{{"
    sock.sendall(head.encode())
    return sock


def test_a_slow_body_gets_408_and_in_flight_bodies_are_bounded(
    slow_receiver: tuple[str, Path], client: httpx.Client
) -> None:
    base_url, folder = slow_receiver
    url = callback_url_for(base_url, SECRET, LAUNCH_KEY)
    sock = _start_slow_post(base_url, url)
    try:
        time.sleep(0.3)  # the slow request holds the only slot
        busy = client.post(url, json=callback_body())
        assert busy.status_code == 503 and busy.headers["retry-after"].isdigit()
        sock.settimeout(10)
        answer = sock.recv(4096).decode("latin-1")
        assert answer.startswith("HTTP/1.1 408")
    finally:
        sock.close()
    assert client.post(url, json=callback_body()).status_code == 200  # the slot is free again
    assert len([p for p in folder.rglob("*.json")]) == 1


def test_weak_secrets_are_refused_before_any_url_is_issued() -> None:
    for weak in ("a-long-random-string", "short", "aaaaaaaaaaaaaaaaaaaaaaaa", ""):
        with pytest.raises(CaptainDataConfigError, match="callback_secret"):
            callback_url_for("https://h", weak, LAUNCH_KEY)
        with pytest.raises(CaptainDataConfigError, match="callback_secret"):
            webhook_url_for("https://h", weak)


def _conn(secret: str, storage: str, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "captaindata",
            "password": "unused",
            "extra": {"callback_secret": secret, "callback_storage": storage, **extra},
        }
    )


def test_weak_secret_in_the_connection_answers_503(
    tmp_path: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CD_WEAK", _conn("a-long-random-string", (tmp_path / "w").as_uri()))
    server = ServerThread(create_app(conn_id="cd_weak"))
    try:
        # A URL signed with the placeholder (as an attacker would): refused.
        expires = int(time.time()) + 3600
        token = tokens._sign("a-long-random-string", LAUNCH_KEY, expires)
        url = f"{server.base_url}/v1/{LAUNCH_KEY}/{expires}/{token}"
        assert client.post(url, json=callback_body()).status_code == 503
    finally:
        server.stop()


def test_unconfigured_receiver_is_cheap_and_quiet(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lookups: list[str] = []
    real = app_module.read_connection_settings

    def counted(conn_id: str) -> dict[str, str | None]:
        lookups.append(conn_id)
        return real(conn_id)

    monkeypatch.setattr(app_module, "read_connection_settings", counted)
    server = ServerThread(create_app(conn_id="no_such_connection_here"))
    try:
        url = callback_url_for(server.base_url, SECRET, LAUNCH_KEY)
        with caplog.at_level(logging.INFO):
            assert client.post(url, json=callback_body()).status_code == 503
            first = [r for r in caplog.records if r.levelno >= logging.ERROR]
            for _ in range(30):
                assert client.post(url, json=callback_body()).status_code == 503
    finally:
        server.stop()
    assert len(lookups) == 1  # one lookup, cached, whatever the number of requests
    # One lookup's error lines (Airflow 2.11's connection model logs its own too), not one a request.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == first
    assert len([r for r in errors if "not configured" in r.getMessage()]) == 1


def test_secret_rotation_with_an_overlap_window_and_no_restart(
    tmp_path: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = (tmp_path / "rot").as_uri()
    new_secret = "the-new-callback-secret-0123456789"
    monkeypatch.setattr(app_module, "REFRESH_ON_REFUSAL_SECONDS", 0.0)
    monkeypatch.setenv("AIRFLOW_CONN_CD_ROT", _conn(SECRET, storage))
    server = ServerThread(create_app(conn_id="cd_rot"))
    try:
        old_url = callback_url_for(server.base_url, SECRET, LAUNCH_KEY)
        new_url = callback_url_for(server.base_url, new_secret, LAUNCH_KEY)
        assert client.post(old_url, json=callback_body()).status_code == 200
        assert client.post(new_url, json=callback_body()).status_code == 403

        # Rotated in the connection, the old secret kept for an hour: both accepted, no restart.
        until = time.time() + 3600
        monkeypatch.setenv(
            "AIRFLOW_CONN_CD_ROT",
            _conn(new_secret, storage, callback_secret_previous=SECRET, callback_secret_previous_until=until),
        )
        assert client.post(new_url, json=callback_body()).status_code == 200
        assert client.post(old_url, json=callback_body()).status_code == 200

        # The window closed: the old secret is revoked, the new one goes on.
        monkeypatch.setenv(
            "AIRFLOW_CONN_CD_ROT",
            _conn(
                new_secret,
                storage,
                callback_secret_previous=SECRET,
                callback_secret_previous_until="2020-01-01T00:00:00Z",
            ),
        )
        receiver = server.server.config.app.state.receiver
        receiver._read_at = float("-inf")  # the next request re-reads the connection (the TTL passed)
        assert client.post(old_url, json=callback_body()).status_code == 403
        assert client.post(new_url, json=callback_body()).status_code == 200

        # An end in milliseconds would keep the old secret signing for ever: refused, named.
        millis = (time.time() + 3600) * 1000
        monkeypatch.setenv(
            "AIRFLOW_CONN_CD_ROT",
            _conn(
                new_secret, storage, callback_secret_previous=SECRET, callback_secret_previous_until=millis
            ),
        )
        receiver._read_at = float("-inf")
        assert client.post(old_url, json=callback_body()).status_code == 503
        with pytest.raises(NotConfigured, match="callback_secret_previous_until"):
            receiver._resolve()
    finally:
        server.stop()
