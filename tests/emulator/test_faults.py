"""Fault injection, the live rate limit, the request log and the control API, seen from a plain
HTTP client."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator import EmulatorClient
from airflow_provider_captaindata.emulator.client import EmulatorControlError
from tests.emulator.conftest import is_error_body

LIVE = "/actions/linkedin-extract-people/run/live"


def profile(i: int = 0) -> dict[str, Any]:
    return {"input": {"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}"}}


def test_status_fault_with_retry_after(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v4/workspaces", status=429, retry_after=1.5, times=2)
    for _ in range(2):
        answer = v4.get("/workspaces")
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1.5"
        assert is_error_body(answer.json(), 429)
    assert v4.get("/workspaces").status_code == 200
    assert [r["status"] for r in emu.requests(path="/v4/workspaces")] == [429, 429, 200]


def test_fault_label_and_message(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v4/workspaces", status=400, error_label="INVALID_INPUT", message="bad thing")
    error = v4.get("/workspaces").json()
    assert (error["error_label"], error["message"], error["status_code"]) == (
        "INVALID_INPUT",
        "bad thing",
        400,
    )
    assert error["error_scope"] and error["error_ref"].startswith("ERR-")
    emu.add_fault("GET", "/v4/workspaces", status=503)
    error = v4.get("/workspaces").json()
    assert (error["error_label"], error["error_scope"]) == ("SERVICE_UNAVAILABLE", "server")


def test_delay_slows_the_answer_of_a_processed_request(v3: httpx.Client, emu: EmulatorClient) -> None:
    workflow = v3.get("/workflows").json()[0]
    emu.add_fault("POST", "/v3/workflows/*/schedule", delay=0.6)
    with pytest.raises(httpx.ReadTimeout):
        v3.post(
            f"/workflows/{workflow['uid']}/schedule",
            json={"job_name": "slow", "inputs": [{"a": 1}]},
            timeout=0.3,
        )
    # The launch happened although its answer never came in time.
    assert [j["name"] for j in v3.get(f"/workflows/{workflow['uid']}/jobs").json()] == ["slow"]
    emu.add_fault("GET", "/v3/workspace", delay=0.3)
    started = time.monotonic()
    assert v3.get("/workspace").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_delay_then_status(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v4/workspaces", status=504, delay=0.3)
    started = time.monotonic()
    assert v4.get("/workspaces").status_code == 504
    assert time.monotonic() - started >= 0.3


def test_drop_is_a_connection_error(v3: httpx.Client, v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v3/jobs/*", drop=True, times=2)
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            v3.get("/jobs/00000000-0000-4000-8000-000000000000")
    assert v3.get("/jobs/00000000-0000-4000-8000-000000000000").status_code == 404
    records = emu.requests(path="/v3/jobs/*")
    assert [r["status"] for r in records] == [None, None, 404] and records[0]["fault"]
    assert v4.get("/workspaces").status_code == 200  # the server is fine


def test_malformed_json(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v4/runs", malformed=True)
    answer = v4.get("/runs")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.text)
    assert v4.get("/runs").json() == []


def test_body_answers_that_json_with_headers(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v4/runs", body=[{"uid": "r1", "status": "ON_HOLD"}], headers={"X-Note": "a"})
    answer = v4.get("/runs")
    assert answer.status_code == 200 and answer.headers["x-note"] == "a"
    assert answer.json() == [{"uid": "r1", "status": "ON_HOLD"}]
    assert v4.get("/runs").json() == []


def test_match_body_fails_one_input_of_a_fan_out(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.add_fault(
        "POST",
        "/v4/actions/*/run/live",
        status=424,
        times=None,
        match_body="person-00003",
        error_label="NO_RESULTS",
    )
    statuses = [v4.post(LIVE, json=profile(i)).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 424, 200, 200]
    assert v4.post(LIVE, json=profile(3)).json()["error_label"] == "NO_RESULTS"  # times=None: always


def test_faults_match_method_glob_and_order(v3: httpx.Client, emu: EmulatorClient) -> None:
    uid = "00000000-0000-4000-8000-000000000000"
    emu.add_fault("GET", "/v3/jobs/*/results", status=502)
    emu.add_fault("GET", "/v3/jobs/*", status=503, times=2)
    emu.add_fault("POST", "/v3/jobs/*", status=500)
    assert v3.get(f"/jobs/{uid}/results").status_code == 502  # first added wins
    assert [v3.get(f"/jobs/{uid}").status_code for _ in range(3)] == [503, 503, 404]
    assert [f["remaining"] for f in emu.faults()] == [0, 0, 1]
    emu.clear_faults()
    assert v3.post(f"/jobs/{uid}/cancel").status_code == 404


def test_rate_limit_refuses_bursts_with_headers(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.configure(rate_limit_per_second=3)
    with ThreadPoolExecutor(12) as pool:  # a burst: far more than 3 calls within a second
        answers = list(pool.map(lambda i: v4.post(LIVE, json=profile(i)), range(12)))
    statuses = [a.status_code for a in answers]
    assert 3 <= statuses.count(200) <= 5 and statuses.count(429) >= 7
    refused = next(a for a in answers if a.status_code == 429)
    assert is_error_body(refused.json(), 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Type"] == "requests_per_second"
    assert float(refused.headers["X-RateLimit-Reset"]) > time.time() - 1
    assert v4.get("/workspaces").status_code == 200  # only live calls are limited


def test_a_client_pacing_at_the_rate_is_never_refused(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.configure(rate_limit_per_second=20)
    started = time.monotonic()
    for i in range(30):  # 1.5 times the bucket: refills count
        time.sleep(max(0.0, started + i / 20 - time.monotonic()))
        assert v4.post(LIVE, json=profile(i)).status_code == 200, i


def test_live_latency(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.configure(live_latency_seconds=0.2)
    started = time.monotonic()
    v4.post(LIVE, json=profile())
    assert time.monotonic() - started >= 0.2


def test_request_log(v4: httpx.Client, v3: httpx.Client, emu: EmulatorClient) -> None:
    v4.post(LIVE, json=profile(), params={"page": 1})
    v3.get("/workspace")
    live, workspace = emu.requests()
    assert set(live) == {
        "method",
        "path",
        "query",
        "headers",
        "body",
        "status",
        "api_status",
        "time",
        "fault",
    }
    assert (live["method"], live["path"], live["query"], live["status"]) == (
        "POST",
        LIVE.replace("/", "/v4/", 1),
        {"page": "1"},
        200,
    )
    assert live["body"] == profile() and live["headers"]["x-api-key"] == emu.api_key
    assert workspace["time"] >= live["time"] and workspace["body"] is None
    assert emu.requests(method="get") == [workspace]
    assert emu.requests(path="/v4/*") == [live]
    v4.post(LIVE, content=b"not json")
    assert emu.requests(method="POST")[-1]["body"] == "not json"
    emu.clear_requests()
    assert emu.requests() == []


def test_reset_clears_everything(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.configure(v4_search_total_results=3)
    emu.add_fault("GET", "/v4/workspaces", status=500, times=None)
    emu.force_outcome("linkedin-extract-people", "FAILED")
    first_uid = v4.get("/runs").json()
    emu.reset()
    assert emu.config()["v4_search_total_results"] == 35 and emu.faults() == [] and emu.requests() == []
    assert v4.get("/workspaces").status_code == 200
    assert v4.post(LIVE, json=profile()).status_code == 200
    assert first_uid == []


def test_same_requests_after_reset_give_the_same_uids(v4: httpx.Client, emu: EmulatorClient) -> None:
    def run_uids() -> list[str]:
        emu.reset()
        for i in range(3):
            v4.post(LIVE, json=profile(i))
        return [r["uid"] for r in v4.get("/runs").json()]

    assert run_uids() == run_uids()


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda e: e.configure(no_such_setting=1), "no_such_setting"),
        (lambda e: e.configure(v3_page_size=0), "v3_page_size"),
        (lambda e: e.configure(callback_drop_rate=2), "callback_drop_rate"),
        (lambda e: e.configure(v3_running_seconds="slow"), "v3_running_seconds"),
        (lambda e: e.configure(v4_last_page_header="maybe"), "v4_last_page_header"),
        (lambda e: e.add_fault("GET", "/v4/x"), "one of status"),
        (lambda e: e.add_fault("GET", "v4/x", status=500), "starting with '/'"),
        (lambda e: e.add_fault("GET", "/v4/x", status=999), "status"),
        (lambda e: e.add_fault("GET", "/v4/x", status=500, drop=True), "cannot go together"),
        (lambda e: e.add_fault("GET", "/v4/x", status=500, times=0), "times"),
        (lambda e: e.add_fault("GET", "/v4/x", status=500, body={}), "cannot go together"),
        (lambda e: e.add_fault("GET", "/v4/x", status=500, headers={"a": "b"}), "headers go with a body"),
        (lambda e: e.force_outcome("nope", "FAILED"), "neither"),
        (lambda e: e.force_outcome("linkedin-extract-people", "warning"), "cannot be forced"),
    ],
)
def test_control_refusals_say_why(emu: EmulatorClient, call: Any, words: str) -> None:
    with pytest.raises(EmulatorControlError, match="400") as info:
        call(emu)
    assert words in str(info.value)


def test_control_api_answers_400_to_what_it_does_not_know(raw: httpx.Client) -> None:
    for method, path, body in [
        ("GET", "/_emulator/nothing", None),
        ("PUT", "/_emulator/config", {}),
        ("POST", "/_emulator/faults", {"method": "GET", "path": "/x", "status": 500, "colour": "red"}),
        ("POST", "/_emulator/config", [1]),
    ]:
        answer = raw.request(method, path, json=body)
        assert answer.status_code == 400, (method, path)
        assert is_error_body(answer.json(), 400) and answer.json()["message"]


def test_info_and_connection(emu: EmulatorClient) -> None:
    info = emu.info()
    assert info["base_url"] == emu.base_url and info["v4_url"] == emu.v4_url
    remote = EmulatorClient(emu.base_url)  # learns key and project from the emulator
    assert (remote.api_key, remote.project_uid) == (emu.api_key, emu.project_uid)
    conn = remote.connection_json()
    assert conn == {
        "conn_type": "captaindata",
        "host": emu.base_url,
        "password": emu.api_key,
        "extra": {"project_uid": emu.project_uid},
    }
    assert json.loads(remote.airflow_env()["AIRFLOW_CONN_CAPTAINDATA_DEFAULT"]) == conn
    assert "AIRFLOW_CONN_OTHER" in remote.airflow_env("other")
    assert remote.connection_uri().startswith("captaindata://:cd_emulator_key@http%3A%2F%2F127.0.0.1%3A")
    remote.close()
