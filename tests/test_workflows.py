"""v3 workflows end to end: real DAGs (dag.test()) against the emulator over loopback."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor
from tests.airflow_helpers import make_dag, run_dag, task_output, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")

PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/profile-{i}"} for i in range(4)]


@pytest.fixture
def emulator(captaindata_emulator: Any) -> Any:
    captaindata_emulator.configure(v3_pending_seconds=0.2, v3_running_seconds=0.8, v3_rows_per_input=3)
    return captaindata_emulator


@pytest.fixture
def workflow_uid(emulator: Any) -> str:
    return next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)


def launch_dag(dag_id: str, workflow_uid: str, **op_kwargs: Any) -> Any:
    with make_dag(dag_id) as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch", workflow_uid=workflow_uid, inputs=PROFILES, poll_interval=0.3, **op_kwargs
        )
    return dag


def emulator_rows(run_uid: str) -> list[dict[str, Any]]:
    return [row for page in CaptainDataHook().iter_workflow_results(run_uid) for row in page]


def launches(emulator: Any) -> list[dict[str, Any]]:
    return emulator.requests(method="POST", path="/v3/workflows/*/schedule")


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_results_to_xcom(emulator: Any, workflow_uid: str, deferrable: bool) -> None:
    dag_run = run_dag(launch_dag(f"v3_xcom_{deferrable}", workflow_uid, deferrable=deferrable))
    assert task_states(dag_run) == {"launch": "success"}
    run_uid = xcom(dag_run, "launch", "run_uid")
    rows = xcom(dag_run, "launch")
    assert rows == emulator_rows(run_uid)
    assert len(rows) == len(PROFILES) * 3
    assert xcom(dag_run, "launch", "run_url").endswith(run_uid)
    assert len(launches(emulator)) == 1


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_results_streamed_to_file(emulator: Any, workflow_uid: str, deferrable: bool, tmp_path: Path) -> None:
    emulator.configure(v3_total_rows=2_345)
    out = tmp_path / "results" / "run.jsonl"
    dag_run = run_dag(
        launch_dag(f"v3_file_{deferrable}", workflow_uid, deferrable=deferrable, output_path=f"file://{out}")
    )
    summary = xcom(dag_run, "launch")
    assert summary["rows"] == 2_345 and summary["path"].endswith("run.jsonl")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == emulator_rows(summary["run_uid"])
    assert sorted(r["row_index"] for r in written) == list(range(2_345))


@pytest.mark.parametrize(
    ("status", "expect"),
    [
        ("warning", "bad input"),
        ("shutdown", "bad input"),
        ("stopped", "bad input"),
        ("paused", "needs attention"),
    ],
)
def test_failed_runs_fail_the_task_with_their_message(
    emulator: Any,
    workflow_uid: str,
    status: str,
    expect: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.force_outcome(workflow_uid, status, error_message="bad input on row 2")
    dag_run = run_dag(launch_dag(f"v3_fail_{status}", workflow_uid, deferrable=True, paused_grace_period=1.0))
    assert task_states(dag_run) == {"launch": "failed"}
    out = task_output(caplog, capsys)
    assert f"ended {status}" in out and expect in out


def test_retry_on_failure_retries_the_run(emulator: Any, workflow_uid: str) -> None:
    emulator.force_outcome(workflow_uid, "warning", error_message="temporary", times=1)
    dag_run = run_dag(launch_dag("v3_retry_run", workflow_uid, deferrable=True, retry_on_failure=1))
    assert task_states(dag_run) == {"launch": "success"}
    assert len(emulator.requests(method="POST", path="/v3/jobs/*/retry")) == 1
    assert len(launches(emulator)) == 1


def test_task_retry_after_launch_does_not_launch_again(emulator: Any, workflow_uid: str) -> None:
    # The first status read after the launch is refused (403, not retried): try 1 fails after
    # launching. Try 2 must find that run (task_state_store on 3.3+, job name before) and wait on it.
    emulator.add_fault("GET", "/v3/jobs/*", status=403, times=1)
    dag = launch_dag("v3_task_retry", workflow_uid, deferrable=True, retries=1, retry_delay=timedelta(0))
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"launch": "success"}
    assert len(launches(emulator)) == 1
    assert len(xcom(dag_run, "launch")) == len(PROFILES) * 3


def test_transient_errors_while_polling_and_paging_lose_nothing(emulator: Any, workflow_uid: str) -> None:
    emulator.configure(v3_total_rows=2_500, v3_running_seconds=1.5)
    emulator.add_fault("GET", "/v3/jobs/*", status=503, times=3)
    emulator.add_fault("GET", "/v3/jobs/*", status=429, retry_after=0.2, times=2)
    emulator.add_fault("GET", "/v3/jobs/*/results", status=502, times=2)
    emulator.add_fault("GET", "/v3/jobs/*/results", drop=True, times=1)
    dag_run = run_dag(launch_dag("v3_transient", workflow_uid, deferrable=True, max_xcom_bytes=10_000_000))
    assert task_states(dag_run) == {"launch": "success"}
    rows = xcom(dag_run, "launch")
    assert sorted(r["row_index"] for r in rows) == list(range(2_500))


def test_execution_timeout_stops_the_remote_run(emulator: Any, workflow_uid: str) -> None:
    emulator.configure(v3_running_seconds=120)
    dag = launch_dag("v3_exec_timeout", workflow_uid, deferrable=True, execution_timeout=timedelta(seconds=4))
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"launch": "failed"}
    run_uid = xcom(dag_run, "launch", "run_uid")
    assert CaptainDataHook().get_workflow_run(run_uid).status == "stopped"
    assert len(emulator.requests(method="POST", path=f"/v3/jobs/{run_uid}/cancel")) == 1


def test_timeout_fails_without_stopping_the_run(emulator: Any, workflow_uid: str) -> None:
    emulator.configure(v3_running_seconds=120)
    dag_run = run_dag(launch_dag("v3_wait_timeout", workflow_uid, deferrable=True, timeout=1.5))
    assert task_states(dag_run) == {"launch": "failed"}
    run_uid = xcom(dag_run, "launch", "run_uid")
    assert CaptainDataHook().get_workflow_run(run_uid).status in ("pending", "running")
    assert emulator.requests(method="POST", path="/v3/jobs/*/cancel") == []


def test_xcom_budget_refuses_instead_of_truncating(
    emulator: Any, workflow_uid: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    dag_run = run_dag(launch_dag("v3_budget", workflow_uid, deferrable=False, max_xcom_bytes=500))
    assert task_states(dag_run) == {"launch": "failed"}
    out = task_output(caplog, capsys)
    assert "output_path" in out and "max_xcom_bytes" in out


def test_dynamic_task_mapping_over_inputs(emulator: Any, workflow_uid: str) -> None:
    with make_dag("v3_mapped") as dag:
        CaptainDataLaunchWorkflowOperator.partial(
            task_id="launch", workflow_uid=workflow_uid, poll_interval=0.3, deferrable=True
        ).expand(inputs=[PROFILES[:2], PROFILES[2:]])
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"launch": "success"}
    names = sorted(r["body"]["job_name"] for r in launches(emulator))
    assert len(names) == 2 and names[0] != names[1]


def launch_elsewhere(workflow_uid: str, job_name: str) -> str:
    """A run the sensor did not start: launched straight through the hook."""
    hook = CaptainDataHook()
    step = hook.get_workflow_details(workflow_uid).steps[0].step_uid
    return hook.launch_workflow(
        workflow_uid, inputs=PROFILES, steps=[{"step_uid": step}], job_name=job_name
    ).job_uid


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_sensor_waits_on_a_run_launched_elsewhere(emulator: Any, workflow_uid: str, deferrable: bool) -> None:
    run_uid = launch_elsewhere(workflow_uid, "ui")
    with make_dag(f"v3_sensor_{deferrable}") as dag:
        CaptainDataRunSensor(task_id="wait", run_uid=run_uid, poke_interval=0.3, deferrable=deferrable)
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"wait": "success"}
    assert xcom(dag_run, "wait") == {"run_uid": run_uid, "run_status": "finished"}


def test_sensor_fails_with_the_remote_message(
    emulator: Any, workflow_uid: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.force_outcome(workflow_uid, "shutdown", error_message="LinkedIn cookie expired")
    run_uid = launch_elsewhere(workflow_uid, "ui2")
    with make_dag("v3_sensor_fail") as dag:
        CaptainDataRunSensor(task_id="wait", run_uid=run_uid, poke_interval=0.3, deferrable=True)
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"wait": "failed"}
    assert "LinkedIn cookie expired" in task_output(caplog, capsys)


def _has_task_state_store() -> bool:
    try:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_task_state_store(), reason="the task state store is Airflow 3.3+")
def test_reschedule_sensor_counts_the_paused_grace_period_across_pokes(
    emulator: Any, workflow_uid: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each reschedule poke builds its waiter afresh (as a new process would): only the task
    # state store can tell it since when the run has been paused.
    emulator.force_outcome(workflow_uid, "paused", error_message="the LinkedIn integration needs attention")
    run_uid = launch_elsewhere(workflow_uid, "paused-reschedule")
    with make_dag("v3_sensor_paused_reschedule") as dag:
        CaptainDataRunSensor(
            task_id="wait",
            run_uid=run_uid,
            mode="reschedule",
            deferrable=False,
            poke_interval=1,
            paused_grace_period=2,
            timeout=60,
        )
    started = time.monotonic()
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"wait": "failed"}
    output = task_output(caplog, capsys)
    assert "paused for" in output and "AirflowSensorTimeout" not in output
    assert time.monotonic() - started < 45
    assert len(emulator.requests(path=f"/v3/jobs/{run_uid}")) >= 3  # several pokes, not one


# -- bad input: errors at construction, naming the parameter ------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": ["not a dict"]}, "inputs[0]"),
        ({"inputs": [{"x": object()}]}, "inputs"),
        ({"workflow_uid": "not-a-uid"}, "workflow_uid"),
        ({"poll_interval": "soon"}, "poll_interval"),
        ({"timeout": -1}, "timeout"),
        ({"repeat_option": {"type": "year", "value": 1}}, "repeat_option"),
        ({"retry_on_failure": -1}, "retry_on_failure"),
        ({"max_xcom_bytes": 0}, "max_xcom_bytes"),
        ({"max_xcom_bytes": True}, "max_xcom_bytes"),
        ({"job_name": 5}, "job_name"),
        ({"steps": [{"step_uid": "s", "accounts": "acc-1"}]}, "steps[0].accounts"),
        ({"steps": [{"step_uid": "s", "parameters": ["x"]}]}, "steps[0].parameters"),
        ({"repeat_option": {"type": "day", "value": True}}, "repeat_option"),
        ({"unstructure_meta": "yes"}, "unstructure_meta"),
        ({"wait_for_completion": "no"}, "wait_for_completion"),
        ({"fetch_results": "no"}, "fetch_results"),
        ({"deferrable": "yes"}, "deferrable"),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs: dict[str, Any], name: str) -> None:
    params = {
        "task_id": "t",
        "workflow_uid": "7f3c2a10-0d5e-4c1b-9a57-2f1e0b6c9d44",
        "inputs": PROFILES,
        **kwargs,
    }
    with pytest.raises(CaptainDataConfigError, match=name.replace("[", r"\[")):
        CaptainDataLaunchWorkflowOperator(**params)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"run_uid": ""}, "run_uid"),
        ({"run_uid": 5}, "run_uid"),
        ({"api_version": "v5"}, "api_version"),
        ({"deferrable": "yes"}, "deferrable"),
        ({"deferrable": True, "poke_interval": 0}, "poke_interval"),
        ({"paused_grace_period": 0}, "paused_grace_period"),
    ],
)
def test_sensor_bad_parameters_fail_at_construction(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=name):
        CaptainDataRunSensor(**{"task_id": "wait", "run_uid": "r1", **kwargs})


@pytest.mark.parametrize("deferrable", [False, True])
def test_sensor_on_an_unknown_run_fails_without_task_retries(emulator: Any, deferrable: bool) -> None:
    with make_dag(f"v3_sensor_unknown_{deferrable}") as dag:
        CaptainDataRunSensor(
            task_id="wait",
            run_uid="no-such-run",
            poke_interval=0.3,
            deferrable=deferrable,
            retries=2,
            retry_delay=timedelta(0),
        )
    assert task_states(run_dag(dag)) == {"wait": "failed"}
    assert len(emulator.requests(method="GET", path="/v3/jobs/no-such-run")) == 1  # one try


def test_unavailable_output_scheme_fails_before_any_call(emulator: Any, workflow_uid: str) -> None:
    emulator.clear_requests()
    dag_run = run_dag(launch_dag("v3_bad_scheme", workflow_uid, output_path="nosuchscheme://bucket/x.jsonl"))
    assert task_states(dag_run) == {"launch": "failed"}
    assert emulator.requests() == []


def test_templated_inputs_are_checked_after_rendering(emulator: Any, workflow_uid: str) -> None:
    with make_dag("v3_templated") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch",
            workflow_uid=workflow_uid,
            inputs="{{ params.inputs }}",
            params={"inputs": "[]"},
            poll_interval=0.3,
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"launch": "failed"}
    assert launches(emulator) == []


def test_a_run_stopped_in_captain_data_fails_without_task_retries(
    emulator: Any, workflow_uid: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.force_outcome(workflow_uid, "stopped", error_message="stopped by jane@example.com")
    dag = launch_dag("v3_user_stop", workflow_uid, deferrable=True, retries=2, retry_delay=timedelta(0))
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"launch": "failed"}
    assert len(launches(emulator)) == 1  # a retry would have launched it again
    assert "stopped in Captain Data, not by this task" in task_output(caplog, capsys)


@pytest.mark.skipif(not _has_task_state_store(), reason="the task state store is Airflow 3.3+")
def test_reschedule_sensor_goes_on_when_a_pause_ends(emulator: Any, workflow_uid: str) -> None:
    # The real accessor refuses set(key, None): the poke after the pause must delete the key.
    run_uid = launch_elsewhere(workflow_uid, "pause-ends")
    paused = {"uid": run_uid, "name": "pause-ends", "status": "paused", "error_message": "cookie"}
    emulator.add_fault("GET", f"/v3/jobs/{run_uid}", body=paused, times=2)
    with make_dag("v3_sensor_pause_ends") as dag:
        CaptainDataRunSensor(
            task_id="wait", run_uid=run_uid, mode="reschedule", poke_interval=1, paused_grace_period=60
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"wait": "success"}
    assert xcom(dag_run, "wait") == {"run_uid": run_uid, "run_status": "finished"}


def test_a_dag_run_redone_with_new_inputs_launches_anew(emulator: Any, workflow_uid: str) -> None:
    # dag.test() on a logical date that has a DAG run replaces it under the same run id, as a
    # backfill over it does; the inputs come from the run's conf and change in between.
    import datetime

    from tests.airflow_helpers import AIRFLOW_3

    with make_dag("v3_redone_new_inputs") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch",
            workflow_uid=workflow_uid,
            inputs="{{ dag_run.conf['inputs'] | tojson }}",
            poll_interval=0.3,
        )
    when = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC)
    dates = {"logical_date": when, "run_after": when} if AIRFLOW_3 else {"execution_date": when}
    first = run_dag(dag, {"inputs": PROFILES[:1]}, **dates)
    first_run_id = first.run_id
    second = run_dag(dag, {"inputs": PROFILES[2:3]}, **dates)
    assert second.run_id == first_run_id and task_states(second) == {"launch": "success"}
    rows = xcom(second, "launch")
    assert {r["linkedin_profile_url"] for r in rows} == {PROFILES[2]["linkedin_profile_url"]}
    assert len(launches(emulator)) == 2
