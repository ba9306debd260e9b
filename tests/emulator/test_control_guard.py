"""The control API is not reachable from a web page (DNS rebinding, cross-origin form posts), and
the request log never keeps an API key other than the emulator's own."""

from __future__ import annotations

import httpx

from airflow_provider_captaindata.emulator.client import EmulatorClient
from airflow_provider_captaindata.emulator.control import is_local_host

REAL_LOOKING_KEY = "cd_live_0123456789abcdefghijklmnopqrstuv"


def test_foreign_host_headers_are_refused(emu: EmulatorClient, raw: httpx.Client) -> None:
    for host in ("evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io"):
        answer = raw.get("/_emulator/info", headers={"Host": host})
        assert answer.status_code == 403, host
        assert emu.api_key not in answer.text
        assert raw.post("/_emulator/reset", json={}, headers={"Host": host}).status_code == 403
    assert raw.get("/_emulator/info").status_code == 200
    assert all(is_local_host(h) for h in ("127.0.0.1:8080", "localhost", "[::1]:99", "::1", "10.0.0.7"))


def test_non_json_posts_are_refused(emu: EmulatorClient, raw: httpx.Client) -> None:
    fault = '{"method": "GET", "path": "/v4/*", "status": 500}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        headers = {"Content-Type": content_type} if content_type else {}
        answer = raw.post("/_emulator/faults", content=fault, headers=headers)
        assert answer.status_code == 415, content_type
        assert raw.post("/_emulator/reset", headers=headers).status_code == 415
    assert raw.get("/_emulator/faults").json() == []
    assert (
        raw.post("/_emulator/faults", content=fault, headers={"Content-Type": "application/json"}).status_code
        == 200
    )


def test_request_log_redacts_other_keys(emu: EmulatorClient, raw: httpx.Client) -> None:
    raw.get("/v4/workspaces", headers={"X-API-Key": REAL_LOOKING_KEY})
    raw.get("/v3/workspace", headers={"Authorization": f"x-api-key {REAL_LOOKING_KEY}"})
    raw.get("/v4/workspaces", headers={"X-API-Key": emu.api_key})
    log = raw.get("/_emulator/requests").json()
    assert REAL_LOOKING_KEY not in str(log)
    headers = [r["headers"] for r in log]
    assert {"x-api-key": "***"}.items() <= headers[0].items()
    assert headers[1]["authorization"] == "x-api-key ***"
    assert headers[2]["x-api-key"] == emu.api_key  # its own key is public (/_emulator/info)
