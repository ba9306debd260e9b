"""v4 async runs and their callbacks, run lists, schedules, workspace, identities, integrations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator import EmulatorClient
from tests.emulator.conftest import Receiver, is_error_body
from tests.polling import wait_for

EXTRACT = "linkedin-extract-people"
SEARCH = "linkedin-search-people"
RUN_FIELDS = {
    "id", "uid", "action_id", "action_name", "retry_count", "user_uid", "workspace_uid", "execution_mode",
    "last_error", "callback", "status", "postponed_until", "started_at", "finished_at", "synced_at",
    "created_at", "updated_at",
}  # fmt: skip
RECORD_FIELDS = {
    "uid", "parent_uid", "retry_count", "created_at", "status", "callback_url", "http_status", "batch_uid",
    "run_uid", "workspace_uid",
}  # fmt: skip


def profiles(n: int) -> list[dict[str, Any]]:
    return [
        {"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i}", "custom_data": {"i": i}}
        for i in range(n)
    ]


def searches(n: int) -> list[dict[str, Any]]:
    url = "https://www.linkedin.com/search/results/people/?keywords=k{}"
    return [{"linkedin_people_search_url": url.format(i), "custom_data": {"i": i}} for i in range(n)]


@pytest.fixture(autouse=True)
def fast(emu: EmulatorClient) -> None:
    emu.configure(v4_queued_seconds=0.1, v4_running_seconds=0.3)


def launch(
    v4: httpx.Client, action: str, inputs: list[dict[str, Any]], url: str, **extra: Any
) -> dict[str, Any]:
    body = {"inputs": inputs, "callback": {"url": url, "headers": {"X-Receiver-Token": "s3cret"}}, **extra}
    answer = v4.post(f"/actions/{action}/run/async", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def final(v4: httpx.Client, run_uid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = v4.get(f"/runs/{run_uid}").json()
        return run if run["status"] not in ("QUEUED", "RUNNING") else None

    result: dict[str, Any] = wait_for(done)
    return result


def records(v4: httpx.Client, run_uid: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = v4.get(
            "/runs/callbacks", params={"run_uid": run_uid, "limit": 20, "offset": len(found)}
        ).json()
        found += page
        if len(page) < 20:
            return found


def test_launch_answer_and_statuses(v4: httpx.Client, receiver: Receiver) -> None:
    answer = launch(v4, EXTRACT, profiles(2), receiver.url)
    assert set(answer) == {
        "run_id", "run_uid", "workspace_uid", "user_uid", "action_name", "status", "postponed_until",
        "created_at", "synced_at", "updated_at",
    }  # fmt: skip
    assert (answer["status"], answer["action_name"]) == ("QUEUED", EXTRACT)
    seen = [answer["status"]]
    while seen[-1] in ("QUEUED", "RUNNING"):
        status = v4.get(f"/runs/{answer['run_uid']}").json()["status"]
        if status != seen[-1]:
            seen.append(status)
        time.sleep(0.03)
    assert seen == ["QUEUED", "RUNNING", "SUCCEEDED"]
    run = v4.get(f"/runs/{answer['run_uid']}").json()
    assert set(run) == RUN_FIELDS
    assert (run["execution_mode"], run["callback"], run["last_error"]) == (
        "ASYNC",
        {"url": receiver.url},
        None,
    )
    assert run["started_at"] and run["finished_at"]


def test_one_callback_per_page_per_input(v4: httpx.Client, receiver: Receiver) -> None:
    run = launch(v4, SEARCH, searches(3), receiver.url)
    assert final(v4, run["run_uid"])["status"] == "SUCCEEDED"
    bodies = receiver.bodies()
    assert len(bodies) == 3 * 4  # 35 results a search: pages of 10, 10, 10, 5
    assert all(set(b) == {"run", "input", "custom_data", "error", "results_count", "results"} for b in bodies)
    assert all(c["headers"]["x-receiver-token"] == "s3cret" for c in receiver.calls)
    per_input: dict[int, list[int]] = {}
    for body in bodies:
        assert body["results_count"] == len(body["results"]) and body["error"] is None
        assert body["custom_data"] == body["input"]["custom_data"]
        assert all(r["custom_data"] == body["custom_data"] for r in body["results"])
        per_input.setdefault(body["custom_data"]["i"], []).append(body["results_count"])
    assert {k: sorted(v) for k, v in per_input.items()} == {i: [5, 10, 10, 10] for i in range(3)}
    assert [b["run"]["status"] for b in bodies] == ["RUNNING"] * 11 + [
        "SUCCEEDED"
    ]  # the final one arrives last
    assert {b["run"]["run_uid"] for b in bodies} == {run["run_uid"]}
    assert len({b["run"]["batch_uid"] for b in bodies}) == 12  # one batch per page
    found = records(v4, run["run_uid"])
    assert len(found) == 12 and all(set(r) == RECORD_FIELDS for r in found)
    assert {(r["status"], r["http_status"], r["callback_url"]) for r in found} == {
        ("SUCCESS", 200, receiver.url)
    }


def test_results_of_an_extract_and_credits(v4: httpx.Client, emu: EmulatorClient, receiver: Receiver) -> None:
    emu.configure(v4_results_per_input=2)
    before = v4.get("/workspaces").json()["credits_used"]
    run = launch(v4, EXTRACT, profiles(3), receiver.url)
    final(v4, run["run_uid"])
    assert sorted(b["custom_data"]["i"] for b in receiver.bodies()) == [0, 1, 2]
    for body in receiver.bodies():
        assert [r["linkedin_profile_url"] for r in body["results"]] == [
            body["input"]["linkedin_profile_url"]
        ] * 2
    assert v4.get("/workspaces").json()["credits_used"] - before == 6


def test_replay_then_refused_after_three(v4: httpx.Client, receiver: Receiver) -> None:
    run = launch(v4, EXTRACT, profiles(1), receiver.url)
    final(v4, run["run_uid"])
    (record,) = records(v4, run["run_uid"])
    assert v4.get(f"/runs/callbacks/{record['uid']}").json() == record
    for attempt in (1, 2, 3):
        replayed = v4.post(f"/runs/callbacks/{record['uid']}/replay", json={}).json()
        assert (replayed["parent_uid"], replayed["retry_count"], replayed["status"]) == (
            record["uid"],
            attempt,
            "SUCCESS",
        )
    refused = v4.post(f"/runs/callbacks/{record['uid']}/replay")
    assert refused.status_code == 400 and is_error_body(refused.json(), 400)
    assert "3" in refused.json()["message"]
    bodies = receiver.bodies()
    assert len(bodies) == 4 and all(b == bodies[0] for b in bodies)  # the same page again
    assert v4.get(f"/runs/callbacks/{record['uid']}").json()["retry_count"] == 3
    assert v4.post("/runs/callbacks/00000000-0000-4000-8000-000000000000/replay").status_code == 404
    assert v4.get("/runs/callbacks/not-a-uid").status_code == 400


def test_unreachable_callback_url_still_finishes(v4: httpx.Client) -> None:
    run = launch(v4, EXTRACT, profiles(3), "http://127.0.0.1:9/nobody-listens")
    assert final(v4, run["run_uid"])["status"] == "SUCCEEDED"
    assert {(r["status"], r["http_status"]) for r in records(v4, run["run_uid"])} == {("FAILED", 0)}


def test_failing_receiver_is_recorded_failed(v4: httpx.Client, receiver: Receiver) -> None:
    receiver.status_for = lambda body: 503 if body["custom_data"]["i"] == 1 else 200
    run = launch(v4, EXTRACT, profiles(3), receiver.url)
    final(v4, run["run_uid"])
    statuses = sorted((r["http_status"], r["status"]) for r in records(v4, run["run_uid"]))
    assert statuses == [(200, "SUCCESS"), (200, "SUCCESS"), (503, "FAILED")]


def test_callbacks_never_reuse_a_connection_the_receiver_may_be_closing(v4: httpx.Client) -> None:
    # uvicorn (the Airflow API server's receiver) closes a keep-alive connection idle for 5 s; a
    # sender reusing it at that moment gets no answer and records a clean page FAILED. The
    # emulator's sender drops idle connections well before any server's keep-alive ends.
    receiver = Receiver(keep_alive_seconds=1.5)
    try:
        first = launch(v4, EXTRACT, profiles(4), receiver.url)
        final(v4, first["run_uid"])
        time.sleep(2.0)  # the first run's connections are now idle past the receiver's keep-alive
        second = launch(v4, EXTRACT, profiles(4), receiver.url)
        final(v4, second["run_uid"])
        found = records(v4, first["run_uid"]) + records(v4, second["run_uid"])
        assert (receiver.dropped, len(found)) == (0, 8)
        assert {(r["status"], r["http_status"]) for r in found} == {("SUCCESS", 200)}
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": profiles(1)[0], "callback": {"url": "http://x.test"}}, "input"),
        ({"inputs": [], "callback": {"url": "http://x.test"}}, "inputs"),
        ({"inputs": profiles(1)}, "callback"),
        ({"inputs": profiles(1), "callback": {}}, "callback.url"),
        ({"inputs": profiles(1), "callback": {"url": "ftp://x.test"}}, "callback.url"),
        ({"inputs": profiles(1), "callback": {"url": "http://x.t", "headers": {"a": 1}}}, "callback.headers"),
        ({"inputs": [*profiles(1), {}], "callback": {"url": "http://x.t"}}, "inputs[1].linkedin_profile_url"),
    ],
)  # fmt: skip
def test_async_validation(v4: httpx.Client, body: dict[str, Any], field: str) -> None:
    answer = v4.post(f"/actions/{EXTRACT}/run/async", json=body)
    assert answer.status_code == 400 and answer.json()["params"]["field"] == field


def test_more_than_100000_inputs_is_400(v4: httpx.Client) -> None:
    one = {"linkedin_profile_url": "https://www.linkedin.com/in/a"}
    body = {"inputs": [one] * 100_001, "callback": {"url": "http://127.0.0.1:9/cb"}}
    answer = v4.post(f"/actions/{EXTRACT}/run/async", json=body, timeout=60)
    assert answer.status_code == 400 and "100000" in answer.json()["message"]


@pytest.mark.parametrize(
    ("status", "errors", "delivered"),
    [("FAILED", 3, 3), ("INVALID", 3, 3), ("BLOCKED", 3, 3), ("PARTIAL_SUCCEEDED", 1, 3), ("STOPPED", 0, 2)],
)
def test_forced_outcomes(
    v4: httpx.Client, emu: EmulatorClient, receiver: Receiver, status: str, errors: int, delivered: int
) -> None:
    emu.force_outcome(EXTRACT, status, error_message="cookie expired")
    run = final(v4, launch(v4, EXTRACT, profiles(3), receiver.url)["run_uid"])
    assert run["status"] == status and run["last_error"]["message"] == "cookie expired"
    bodies = receiver.bodies()
    assert len(bodies) == delivered and bodies[-1]["run"]["status"] == status
    assert sum(1 for b in bodies if b["error"]) == errors
    assert all(b["results"] == [] for b in bodies if b["error"])
    if status in ("STOPPED", "BLOCKED"):
        resumed = v4.post(f"/runs/{run['uid']}/resume", json={}).json()
        assert (resumed["status"], resumed["retry_count"]) == ("QUEUED", 1)
        assert final(v4, run["uid"])["status"] == "SUCCEEDED"
        assert len(receiver.bodies()) == delivered + (1 if status == "STOPPED" else 3)
    else:
        assert v4.post(f"/runs/{run['uid']}/resume").status_code == 400


def test_callback_faults_are_deterministic(v4: httpx.Client, emu: EmulatorClient, receiver: Receiver) -> None:
    def one_run() -> tuple[list[tuple[int, str]], int]:
        emu.reset()
        receiver.calls.clear()
        emu.configure(
            v4_queued_seconds=0.05,
            v4_running_seconds=0.1,
            callback_drop_rate=0.3,
            callback_duplicate_rate=0.3,
        )
        run = launch(v4, EXTRACT, profiles(10), receiver.url)
        final(v4, run["run_uid"])
        found = records(v4, run["run_uid"])
        return sorted((r["http_status"], r["status"]) for r in found), len(receiver.calls)

    first, second = one_run(), one_run()
    assert first == second
    outcomes, calls = first
    dropped = sum(1 for s in outcomes if s == (0, "FAILED"))
    assert 0 < dropped < 10 and calls > 10 - dropped  # some pages lost, some sent twice


def test_callback_fail_rate_and_reorder(v4: httpx.Client, emu: EmulatorClient, receiver: Receiver) -> None:
    emu.configure(callback_fail_rate=1.0, callback_reorder=True)
    run = launch(v4, SEARCH, searches(2), receiver.url)
    assert final(v4, run["run_uid"])["status"] == "SUCCEEDED"
    bodies = receiver.bodies()
    assert len(bodies) == 8  # delivered...
    assert {r["status"] for r in records(v4, run["run_uid"])} == {"FAILED"}  # ...but recorded failed
    assert bodies[-1]["run"]["status"] == "RUNNING"  # the final page did not arrive last


def test_runs_list_filters_sort_and_bounds(v4: httpx.Client, receiver: Receiver) -> None:
    uids = [launch(v4, EXTRACT, profiles(1), receiver.url)["run_uid"] for _ in range(3)]
    v4.post("/actions/linkedin-extract-people/run/live", json={"input": profiles(1)[0]})
    runs = v4.get("/runs", params={"execution_mode": "ASYNC", "action_name": EXTRACT}).json()
    assert [r["uid"] for r in runs] == uids
    newest = v4.get("/runs", params={"sort": "-created_at", "limit": 2}).json()
    assert len(newest) == 2 and newest[0]["execution_mode"] == "LIVE"
    assert [
        r["uid"] for r in v4.get("/runs", params={"offset": 1, "execution_mode": "ASYNC"}).json()
    ] == uids[1:]
    assert len(v4.get("/runs", params={"status": "QUEUED,RUNNING,SUCCEEDED"}).json()) == 4
    for params in (
        {"limit": 101},
        {"limit": 0},
        {"offset": -1},
        {"status": "DONE"},
        {"execution_mode": "BATCH"},
        {"sort": "color"},
    ):
        answer = v4.get("/runs", params=params)
        assert answer.status_code == 400 and is_error_body(answer.json(), 400), params
    assert v4.get("/runs/not-a-uuid").status_code == 400
    assert v4.get("/runs/00000000-0000-4000-8000-000000000000").status_code == 404


def test_schedule_at_runs_once(v4: httpx.Client, receiver: Receiver) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=0.3)).isoformat()
    body = {"inputs": profiles(1), "callback": {"url": receiver.url}, "schedule_at": at}
    answer = v4.post(f"/actions/{EXTRACT}/run/schedule", json=body).json()
    assert set(answer) == {"schedule_uid", "status", "cron", "timezone", "next_execution_at", "created_at"}
    assert answer["status"] == "ACTIVE"
    uid = answer["schedule_uid"]
    schedule = wait_for(lambda: (s := v4.get(f"/schedules/{uid}").json())["status"] == "COMPLETED" and s)
    assert schedule["last_executed_at"] and schedule["next_execution_at"] is None
    (run,) = v4.get("/runs", params={"execution_mode": "ASYNC"}).json()
    assert final(v4, run["uid"])["status"] == "SUCCEEDED"
    assert v4.post(f"/schedules/{uid}/pause").status_code == 400  # completed


def test_cron_schedule_pause_resume_cancel(v4: httpx.Client) -> None:
    body = {
        "inputs": profiles(1),
        "callback": {"url": "http://127.0.0.1:9/cb"},
        "cron": "0 9 * * 1",
        "timezone": "Europe/Paris",
    }
    uid = v4.post(f"/actions/{EXTRACT}/run/schedule", json=body).json()["schedule_uid"]
    assert v4.post(f"/schedules/{uid}/resume").status_code == 400  # active already
    assert v4.post(f"/schedules/{uid}/pause").json()["status"] == "PAUSED"
    assert v4.post(f"/schedules/{uid}/resume").json()["status"] == "ACTIVE"
    assert v4.post(f"/schedules/{uid}/cancel").json()["status"] == "CANCELLED"
    assert v4.post(f"/schedules/{uid}/stop").status_code == 400
    listed = v4.get("/schedules", params={"status": "CANCELLED"}).json()
    assert [s["uid"] for s in listed] == [uid] and listed[0]["cron"] == "0 9 * * 1"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({}, "cron"),
        ({"cron": ""}, "cron"),
        ({"schedule_at": "tomorrow"}, "schedule_at"),
        ({"cron": "0 9 * * 1", "timezone": "Mars/Olympus"}, "timezone"),
    ],
)  # fmt: skip
def test_schedule_validation(v4: httpx.Client, extra: dict[str, Any], field: str) -> None:
    body = {"inputs": profiles(1), "callback": {"url": "http://127.0.0.1:9/cb"}, **extra}
    answer = v4.post(f"/actions/{EXTRACT}/run/schedule", json=body)
    assert answer.status_code == 400 and answer.json()["params"]["field"] == field
    too_many = {"inputs": profiles(101), "callback": {"url": "http://127.0.0.1:9/cb"}, "cron": "0 9 * * 1"}
    assert v4.post(f"/actions/{EXTRACT}/run/schedule", json=too_many).json()["params"]["field"] == "inputs"


def test_workspace_identities_users_integrations(v4: httpx.Client, emu: EmulatorClient) -> None:
    workspace = v4.get("/workspaces").json()
    assert {"uid", "name", "credits_left", "credits_max", "credits_used", "plan_name"} <= set(workspace)
    assert workspace["uid"] == emu.project_uid
    identities = v4.get("/identities").json()
    assert len(identities) == 2 and v4.get(f"/identities/{identities[0]['uid']}").json() == identities[0]
    (user,) = v4.get("/users").json()
    assert v4.get(f"/users/{user['uid']}").json() == user
    assert v4.get("/users/00000000-0000-4000-8000-000000000000").status_code == 404
    integrations = {i["name"] for i in v4.get("/integrations").json()}
    assert {"linkedin", "salesnavigator", "googlemaps", "tripadvisor"} <= integrations
