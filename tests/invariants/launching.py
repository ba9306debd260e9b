"""The launching scenario: one task launching a v3 workflow run or a v4 async action run, run
by ``dag.test()`` with retries, under faults on the launch call (refused, or answered badly
after the API created the run), runs that fail, and a failure after ``execute()`` returned."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any, ClassVar

import httpx

from airflow_provider_captaindata.client.versions import epoch_seconds, get_version
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from tests.invariants.harness import check, install
from tests.invariants.scenarios import Scenario

EXTRACT = "linkedin-extract-people"
LAUNCH_PATHS = {"v3": "/v3/workflows/*/schedule", "v4": f"/v4/actions/{EXTRACT}/run/async"}
PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/launch-{i}"} for i in range(2)]


class _FailsAfterExecute:
    """Its first try fails once ``execute()`` has returned (a failed XCom push, a worker dying
    before Airflow records the success): the retry must not launch again."""

    failed: ClassVar[set[str]] = set()

    def post_execute(self, context: Any, result: Any = None) -> None:
        key = f"{context['ti'].dag_id}.{context['ti'].task_id}"
        if key not in self.failed:
            self.failed.add(key)
            raise RuntimeError("the try fails after execute() returned (harness)")


class V3FailsAfterExecute(_FailsAfterExecute, CaptainDataLaunchWorkflowOperator):
    pass


class V4FailsAfterExecute(_FailsAfterExecute, CaptainDataRunActionOperator):
    pass


def run_launching(scenario: Scenario, emulator: Any, dag_id: str) -> None:
    from tests.airflow_helpers import make_dag, run_dag

    emulator.configure(
        v3_pending_seconds=0.05, v3_running_seconds=0.2, v4_queued_seconds=0.05, v4_running_seconds=0.2
    )
    workflow_uid = next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)
    if scenario.failing:
        target, outcome = (EXTRACT, "FAILED") if scenario.api == "v4" else (workflow_uid, "warning")
        emulator.force_outcome(target, outcome, times=len(scenario.failing))
    install(emulator, scenario, "POST", None)
    kwargs: dict[str, Any] = {
        "task_id": "launch",
        "inputs": PROFILES,
        "retries": scenario.retries,
        "retry_delay": timedelta(0),
        "poll_interval": 0.1,
        "deferrable": False,
        "fetch_results": False,
    }
    with make_dag(dag_id) as dag:
        if scenario.api == "v4":
            v4 = V4FailsAfterExecute if scenario.fail_after_execute else CaptainDataRunActionOperator
            v4(action=EXTRACT, mode="async", callback_url="http://127.0.0.1:9/cb", **kwargs)
        else:
            v3 = V3FailsAfterExecute if scenario.fail_after_execute else CaptainDataLaunchWorkflowOperator
            v3(workflow_uid=workflow_uid, **kwargs)
    dag_run = run_dag(dag)
    check_launches(scenario, emulator, workflow_uid, [str(ti.state) for ti in dag_run.get_task_instances()])


def created_runs(
    scenario: Scenario, emulator: Any, workflow_uid: str
) -> list[tuple[float, float | None, str]]:
    """(created, finished, status) of every run the API holds for the scenario, oldest first."""
    if scenario.api == "v4":
        answer = httpx.get(
            f"{emulator.v4_url}/runs",
            params={"action_name": EXTRACT, "limit": 100},
            headers={"X-API-Key": emulator.api_key},
        )
        body = answer.raise_for_status().json()
        items = body if isinstance(body, list) else body.get("data") or body.get("runs") or []
        fields = ("created_at", "finished_at")
    else:
        headers = {"Authorization": f"x-api-key {emulator.api_key}", "x-project-id": emulator.project_uid}
        answer = httpx.get(f"{emulator.v3_url}/workflows/{workflow_uid}/jobs", headers=headers)
        items = answer.raise_for_status().json()
        fields = ("scheduled_time", "finish_time")
    runs = [
        (epoch_seconds(item[fields[0]]) or 0.0, epoch_seconds(item.get(fields[1])), str(item["status"]))
        for item in items
    ]
    return sorted(runs)


def check_launches(scenario: Scenario, emulator: Any, workflow_uid: str, states: list[str]) -> None:
    posts = emulator.requests("POST", LAUNCH_PATHS[scenario.api])
    acted = [p for p in posts if 200 <= (p.get("api_status") or 0) < 300]
    runs = created_runs(scenario, emulator, workflow_uid)
    check(len(acted) == len(runs), "the request log and the API's runs disagree", [len(acted), len(runs)])
    status_states = get_version(scenario.api).status_states
    # 2. a run is launched once: a launch identity gets a new run only once its previous run
    # ended badly (and the task retried), never while one is going or after one succeeded
    for (_, finished, status), (next_created, _, _) in itertools.pairwise(runs):
        state = status_states.get(status)
        check(
            state is not None and state.is_final and not state.is_success and finished is not None,
            "a run was launched again while the task's run was going or had succeeded",
            {"runs": runs, "launch answers": [p.get("status") for p in posts], "tasks": states},
        )
        assert finished is not None
        check(
            next_created >= finished,
            "a run was launched again before the task's earlier run had ended",
            {"runs": runs, "launch answers": [p.get("status") for p in posts]},
        )
    check(
        len(runs) <= scenario.retries + 1,
        "more runs than tries",
        {"runs": runs, "retries": scenario.retries, "launch answers": [p.get("status") for p in posts]},
    )
