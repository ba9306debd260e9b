"""The launching scenario: one task launching a v3 workflow run or a v4 async action run, run
by ``dag.test()`` with retries, under faults on the launch call (refused, or answered badly
after the API created the run), runs that fail, and a failure after ``execute()`` returned."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from airflow_provider_captaindata.client.versions import epoch_seconds, get_version
from airflow_provider_captaindata.emulator.v3 import JOBS_PAGE_SIZE
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import LAUNCH_TAG_PARAM, CaptainDataRunActionOperator
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from tests.invariants.harness import check, install, later, run_dag_through_kills, worker_dies
from tests.invariants.scenarios import Scenario

EXTRACT = "linkedin-extract-people"
LAUNCH_PATHS = {"v3": "/v3/workflows/*/schedule", "v4": f"/v4/actions/{EXTRACT}/run/async"}
V4_RUNS_LIMIT = 100
PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/launch-{i}"} for i in range(2)]
NEW_PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/launch-{i}"} for i in range(2, 4)]


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
    from tests.airflow_helpers import rerun_cleared

    emulator.configure(
        v3_pending_seconds=0.05, v3_running_seconds=0.2, v4_queued_seconds=0.05, v4_running_seconds=0.2
    )
    workflow_uid = next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)
    if scenario.failing:
        target, outcome = (EXTRACT, "FAILED") if scenario.api == "v4" else (workflow_uid, "warning")
        emulator.force_outcome(target, outcome, times=len(scenario.failing))
    install(emulator, scenario, "POST", None)
    with worker_dies(scenario.kill, scenario.kill_after):
        dag_run = run_dag_through_kills(launching_dag(scenario, dag_id, workflow_uid, PROFILES))
    with later(scenario.clear_after if scenario.clear else 0.0):
        if scenario.clear:
            inputs = NEW_PROFILES if scenario.clear == "new" else PROFILES
            dag_run = rerun_cleared(launching_dag(scenario, dag_id, workflow_uid, inputs), dag_run)
        states = [str(ti.state) for ti in dag_run.get_task_instances()]
        check_launches(scenario, emulator, workflow_uid, states)


def launching_dag(scenario: Scenario, dag_id: str, workflow_uid: str, inputs: list[dict[str, Any]]) -> Any:
    from tests.airflow_helpers import make_dag

    kwargs: dict[str, Any] = {
        "task_id": "launch",
        "inputs": inputs,
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
    return dag


Runs = list[tuple[float, float | None, str]]


def created_runs(scenario: Scenario, emulator: Any, workflow_uid: str) -> dict[str, Runs]:
    """(created, finished, status) of every run the API holds for the scenario, oldest first,
    by launch identity (the tag of the v3 run's name, the launch key in the v4 callback URL)."""
    if scenario.api == "v4":
        answer = httpx.get(
            f"{emulator.v4_url}/runs",
            params={"action_name": EXTRACT, "limit": V4_RUNS_LIMIT},
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
    # One page is read: a full one would leave runs out of the count.
    assert len(items) < (V4_RUNS_LIMIT if scenario.api == "v4" else JOBS_PAGE_SIZE), "a full page: read on"
    runs: dict[str, Runs] = defaultdict(list)
    for item in items:
        run = (epoch_seconds(item[fields[0]]) or 0.0, epoch_seconds(item.get(fields[1])), str(item["status"]))
        runs[launch_of(scenario, item)].append(run)
    return {launch: sorted(found) for launch, found in runs.items()}


def launch_of(scenario: Scenario, item: dict[str, Any]) -> str:
    if scenario.api == "v4":
        query = urlsplit((item.get("callback") or {}).get("url") or "").query
        return parse_qs(query).get(LAUNCH_TAG_PARAM, [""])[0]
    return str(item.get("name") or item.get("job_name") or "").rpartition("#")[2]


def check_launches(scenario: Scenario, emulator: Any, workflow_uid: str, states: list[str]) -> None:
    posts = emulator.requests("POST", LAUNCH_PATHS[scenario.api])
    acted = [p for p in posts if 200 <= (p.get("api_status") or 0) < 300]
    launches = created_runs(scenario, emulator, workflow_uid)
    count = sum(len(runs) for runs in launches.values())
    check(len(acted) == count, "the request log and the API's runs disagree", [len(acted), count])
    check(
        all(launches) and len(launches) <= (2 if scenario.clear == "new" else 1),
        "runs of a launch identity the scenario never made",
        sorted(launches),
    )
    status_states = get_version(scenario.api).status_states
    answers = [p.get("status") for p in posts]
    for runs in launches.values():
        # 2. a run is launched once: a launch identity gets a new run only once its previous run
        # ended badly (and the task retried, or was cleared), never while one is going or after
        # one succeeded
        for (_, finished, status), (next_created, _, _) in itertools.pairwise(runs):
            state = status_states.get(status)
            check(
                state is not None and state.is_final and not state.is_success and finished is not None,
                "a run was launched again while the task's run was going or had succeeded",
                {"runs": runs, "launch answers": answers, "tasks": states},
            )
            assert finished is not None
            check(
                next_created >= finished,
                "a run was launched again before the task's earlier run had ended",
                {"runs": runs, "launch answers": answers},
            )
        tries = (scenario.retries + 1) * (2 if scenario.clear == "same" else 1)
        check(
            len(runs) <= tries,
            "more runs than tries",
            {"runs": runs, "retries": scenario.retries, "clear": scenario.clear, "launch answers": answers},
        )
