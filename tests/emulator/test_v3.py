"""v3: workspace, workflows, launch, runs and their statuses, results paging, retry, stop."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator import EmulatorClient
from tests.emulator.conftest import is_error_body
from tests.polling import wait_for

JOB_FIELDS = {
    "uid", "name", "workflow_uid", "workflow_name", "main_job_uid", "step_uid", "status", "error_message",
    "accounts", "configuration", "number_inputs", "row_count", "total_row_count", "start_time",
    "finish_time", "scheduled_time",
}  # fmt: skip


def profiles(n: int) -> list[dict[str, Any]]:
    return [{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i}"} for i in range(n)]


@pytest.fixture
def workflow(v3: httpx.Client) -> dict[str, Any]:
    return v3.get("/workflows").json()[0]


def launch(v3: httpx.Client, workflow: dict[str, Any], n: int = 2, **body: Any) -> str:
    payload = {
        "job_name": "test-run",
        "inputs": profiles(n),
        "steps": [{"step_uid": workflow["steps"][0]["step_uid"]}],
    }
    answer = v3.post(f"/workflows/{workflow['uid']}/schedule", json={**payload, **body})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_uid"])


def finished(v3: httpx.Client, job_uid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = v3.get(f"/jobs/{job_uid}").json()
        return job if job["status"] not in ("pending", "running") else None

    result: dict[str, Any] = wait_for(done)
    return result


def all_rows(v3: httpx.Client, job_uid: str) -> tuple[list[dict[str, Any]], list[int]]:
    url: str | None = f"/jobs/{job_uid}/results"
    rows: list[dict[str, Any]] = []
    sizes = []
    while url:
        page = v3.get(url).json()
        rows += page["results"]
        sizes.append(len(page["results"]))
        url = page["paging"]["next"] if page["paging"]["have_next_page"] else None
    return rows, sizes


def test_workspace(v3: httpx.Client) -> None:
    body = v3.get("/workspace").json()
    assert set(body) == {
        "name", "email", "plan_name", "current_month_start", "current_month_end", "tasks_left", "tasks_max",
        "tasks_used",
    }  # fmt: skip


def test_seeded_workflows_and_details(v3: httpx.Client, emu: EmulatorClient) -> None:
    workflows = v3.get("/workflows").json()
    assert isinstance(workflows, list) and len(workflows) >= 4
    assert workflows[0]["name"] == "Extract LinkedIn People Profile" and len(workflows[0]["steps"]) == 1
    assert any(len(w["steps"]) == 2 for w in workflows)
    for workflow in workflows:
        assert set(workflow) == {"uid", "name", "created_at", "project_id", "template_uid", "steps"}
        assert workflow["project_id"] == emu.project_uid
        assert all(set(s) == {"uid", "step_uid", "name"} for s in workflow["steps"])
    details = v3.get(f"/workflows/{workflows[0]['uid']}/details").json()
    (step,) = details["steps"]
    assert set(step) == {
        "step_uid", "step_name", "position", "input_schema", "output_schema", "parameters_schema",
        "integrations",
    }  # fmt: skip
    assert step["input_schema"]["required"] == ["linkedin_profile_url"]
    assert v3.get("/workflows").json() == workflows  # same uids every time for a seed
    assert v3.get("/workflows/00000000-0000-4000-8000-000000000000/details").status_code == 404


def test_run_moves_pending_running_finished(
    v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]
) -> None:
    emu.configure(v3_pending_seconds=0.3, v3_running_seconds=0.6)
    answer = v3.post(
        f"/workflows/{workflow['uid']}/schedule",
        json={
            "job_name": "lifecycle",
            "inputs": profiles(3),
            "steps": [{"step_uid": workflow["steps"][0]["step_uid"]}],
        },
    ).json()
    assert set(answer) == {"workflow", "message", "job_uid"} and answer["workflow"]["uid"] == workflow["uid"]
    job_uid = answer["job_uid"]
    seen: list[str] = []
    while not seen or seen[-1] in ("pending", "running"):
        job = v3.get(f"/jobs/{job_uid}").json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        time.sleep(0.05)
    assert seen == ["pending", "running", "finished"]
    assert set(job) == JOB_FIELDS
    assert (job["name"], job["number_inputs"], job["row_count"], job["error_message"]) == (
        "lifecycle",
        3,
        6,
        None,
    )
    assert job["start_time"] and job["finish_time"] and job["workflow_name"] == workflow["name"]


def test_results_pages_hold_every_row_once(
    v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]
) -> None:
    emu.configure(v3_pending_seconds=0, v3_running_seconds=0.05)
    job_uid = launch(v3, workflow, n=4)
    finished(v3, job_uid)
    rows, sizes = all_rows(v3, job_uid)
    assert sizes == [8]
    assert [r["row_index"] for r in rows] == list(range(8))
    assert [r["input_index"] for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(
        r["linkedin_profile_url"] == f"https://www.linkedin.com/in/person-{r['input_index']}" for r in rows
    )
    assert all(r["full_name"] == f"{r['first_name']} {r['last_name']}" for r in rows)
    assert rows == all_rows(v3, job_uid)[0]  # the same rows on every read


def test_2500_rows_in_pages_of_1000(v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]) -> None:
    emu.configure(v3_pending_seconds=0, v3_running_seconds=0.05, v3_total_rows=2500)
    job_uid = launch(v3, workflow, n=5)
    finished(v3, job_uid)
    first = v3.get(f"/jobs/{job_uid}/results").json()
    assert first["paging"]["previous"] is None and first["paging"]["have_next_page"] is True
    assert (
        first["paging"]["next"].startswith(emu.base_url + "/v3/jobs/") and "page=" in first["paging"]["next"]
    )
    rows, sizes = all_rows(v3, job_uid)
    assert sizes == [1000, 1000, 500]
    assert sorted(r["row_index"] for r in rows) == list(range(2500))
    assert sorted({r["input_index"] for r in rows}) == [0, 1, 2, 3, 4]
    last = v3.get(first["paging"]["next"].replace("page=1", "page=2")).json()
    assert last["paging"] == {
        "previous": first["paging"]["next"],
        "next": None,
        "have_next_page": False,
    }


def test_results_grow_while_running(v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]) -> None:
    emu.configure(v3_pending_seconds=0.2, v3_running_seconds=1.0, v3_total_rows=1000)
    job_uid = launch(v3, workflow)
    assert v3.get(f"/jobs/{job_uid}/results").json()["results"] == []
    counts = []
    for _ in range(6):
        time.sleep(0.25)
        counts.append(v3.get(f"/jobs/{job_uid}").json()["row_count"])
    assert counts == sorted(counts) and 0 < counts[1] < 1000 and counts[-1] == 1000


def test_runs_of_a_workflow_newest_first_50_a_page(
    v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]
) -> None:
    uids = [launch(v3, workflow, n=1, job_name=f"run-{i}") for i in range(52)]
    page0 = v3.get(f"/workflows/{workflow['uid']}/jobs", params={"page": 0}).json()
    page1 = v3.get(f"/workflows/{workflow['uid']}/jobs", params={"page": 1}).json()
    assert [j["uid"] for j in page0 + page1] == uids[::-1]
    assert len(page0) == 50 and page0[0]["name"] == "run-51"
    assert v3.get(f"/workflows/{workflow['uid']}/jobs", params={"page": 2}).json() == []
    assert v3.get(f"/workflows/{workflow['uid']}/jobs", params={"page": "x"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": []}, "inputs"),
        ({}, "inputs"),
        ({"inputs": "nope"}, "inputs"),
        ({"inputs": [{"linkedin_profile_url": "u"}, "x"]}, "inputs[1]"),
        ({"inputs": [{"a": 1}], "steps": [{"step_uid": "not-a-step"}]}, "steps[0].step_uid"),
        ({"inputs": [{"a": 1}], "steps": [{}]}, "steps[0]"),
        ({"inputs": [{"a": 1}], "repeat_option": {"type": "year", "value": 1}}, "repeat_option.type"),
        ({"inputs": [{"a": 1}], "repeat_option": {"type": "day", "value": 0}}, "repeat_option.value"),
        ({"inputs": [{"a": 1}], "job_name": 3}, "job_name"),
    ],
)
def test_launch_validation(
    v3: httpx.Client, workflow: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    answer = v3.post(f"/workflows/{workflow['uid']}/schedule", json=body)
    assert answer.status_code == 400
    error = answer.json()
    assert is_error_body(error, 400)
    assert (error["error_label"], error["error_scope"], error["params"]["field"]) == (
        "INVALID_INPUT",
        "input",
        field,
    )
    assert field in error["message"]


def test_launch_errors_without_a_500(v3: httpx.Client, workflow: dict[str, Any]) -> None:
    assert v3.post(f"/workflows/{workflow['uid']}/schedule", content=b"{not json").status_code == 400
    assert v3.post(f"/workflows/{workflow['uid']}/schedule", json=[1, 2]).status_code == 400
    answer = v3.post("/workflows/00000000-0000-4000-8000-000000000000/schedule", json={"inputs": [{}]})
    assert answer.status_code == 404 and is_error_body(answer.json(), 404)
    assert v3.delete(f"/workflows/{workflow['uid']}/schedule").status_code == 405


def test_unknown_run_is_404_everywhere(v3: httpx.Client) -> None:
    uid = "00000000-0000-4000-8000-000000000000"
    for method, path in [
        ("GET", ""),
        ("GET", "/results"),
        ("GET", "/inputs"),
        ("POST", "/retry"),
        ("POST", "/cancel"),
    ]:
        answer = v3.request(method, f"/jobs/{uid}{path}")
        assert answer.status_code == 404 and is_error_body(answer.json(), 404), path


def test_inputs_of_a_run(v3: httpx.Client, workflow: dict[str, Any]) -> None:
    job_uid = launch(v3, workflow, n=3)
    assert v3.get(f"/jobs/{job_uid}/inputs").json() == profiles(3)


@pytest.mark.parametrize("status", ["warning", "shutdown", "paused"])
def test_forced_outcome_then_retry(
    v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any], status: str
) -> None:
    emu.configure(v3_pending_seconds=0, v3_running_seconds=0.1)
    emu.force_outcome(workflow["uid"], status, error_message="LinkedIn cookie expired")
    job_uid = launch(v3, workflow)
    job = finished(v3, job_uid)
    assert (job["status"], job["error_message"]) == (status, "LinkedIn cookie expired")
    retried = v3.post(f"/jobs/{job_uid}/retry", json={}).json()
    sub = finished(v3, retried["job_uid"])
    assert (sub["status"], sub["main_job_uid"], sub["name"]) == ("finished", job_uid, job["name"])
    assert v3.post(f"/jobs/{retried['job_uid']}/retry").status_code == 400  # finished: nothing to retry


def test_forced_outcome_times(v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]) -> None:
    emu.configure(v3_pending_seconds=0, v3_running_seconds=0.05)
    emu.force_outcome(workflow["uid"], "warning", times=2)
    statuses = [finished(v3, launch(v3, workflow))["status"] for _ in range(3)]
    assert statuses == ["warning", "warning", "finished"]


def test_cancel_stops_a_run(v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]) -> None:
    emu.configure(v3_pending_seconds=0, v3_running_seconds=30)
    job_uid = launch(v3, workflow)
    stopped = v3.post(f"/jobs/{job_uid}/cancel").json()
    assert stopped["status"] == "stopped" and stopped["finish_time"]
    time.sleep(0.1)
    assert v3.get(f"/jobs/{job_uid}").json()["status"] == "stopped"


def test_delete_a_repeating_run_by_name(v3: httpx.Client, workflow: dict[str, Any]) -> None:
    job_uid = launch(v3, workflow, job_name="every-day", repeat_option={"type": "day", "value": 1})
    assert v3.get(f"/jobs/{job_uid}").json()["configuration"] == {
        "repeat_option": {"type": "day", "value": 1}
    }
    assert v3.delete("/jobs/every-day").status_code == 200
    assert v3.get(f"/jobs/{job_uid}").json()["configuration"] == {}
    assert v3.delete("/jobs/every-day").status_code == 404


def test_parallel_inputs_limit_is_429(
    v3: httpx.Client, emu: EmulatorClient, workflow: dict[str, Any]
) -> None:
    emu.configure(v3_max_parallel_inputs=3, v3_running_seconds=30)
    launch(v3, workflow, n=2)
    answer = v3.post(
        f"/workflows/{workflow['uid']}/schedule",
        json={"inputs": profiles(2), "steps": [{"step_uid": workflow["steps"][0]["step_uid"]}]},
    )
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert is_error_body(answer.json(), 429)
