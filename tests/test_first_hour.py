"""What a new user meets in the first hour: errors that name their fix, no spurious error line,
no launch into a trap (issue 25)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.links import CaptainDataRunLink
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor
from tests.airflow_helpers import AIRFLOW_3, make_dag, run_dag, task_output, task_states, xcom

PROFILES = [{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}]


@pytest.fixture
def workflow_uid(captaindata_emulator: Any) -> str:
    captaindata_emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=0.5)
    return next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)


@pytest.mark.usefixtures("airflow_db")
def test_a_failure_before_the_launch_logs_no_run_url_xcom_error(
    workflow_uid: str, captaindata_emulator: Any, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    with make_dag("first_hour_fails_before_launch") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch", workflow_uid=workflow_uid, inputs="{{ 'not json' }}", deferrable=True
        )
    dag_run = run_dag(dag)
    out = task_output(caplog, capsys)
    assert task_states(dag_run) == {"launch": "failed"}
    assert "rendered to a string that is not JSON" in out
    assert "XCom not found" not in out
    assert not captaindata_emulator.requests(method="POST")


@pytest.mark.usefixtures("airflow_db")
def test_the_link_of_a_deferred_run_survives_the_resume(workflow_uid: str) -> None:
    with make_dag("first_hour_link_after_resume") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch", workflow_uid=workflow_uid, inputs=PROFILES, deferrable=True, poll_interval=0.2
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"launch": "success"}
    run_uid = xcom(dag_run, "launch", "run_uid")
    assert xcom(dag_run, "launch", "run_url").endswith(run_uid)
    if AIRFLOW_3:  # what the Airflow 3 UI shows: the link the worker computed at the end of the try
        assert xcom(dag_run, "launch", CaptainDataRunLink().xcom_key).endswith(run_uid)


@pytest.mark.parametrize("api_version", ["{{ params.api_version }}", "{{ var.value.v }}"])
def test_a_templated_api_version_is_refused_when_the_dag_is_parsed(api_version: str) -> None:
    with pytest.raises(CaptainDataConfigError, match="api_version cannot be templated") as caught:
        CaptainDataRunSensor(task_id="wait", run_uid="{{ params.run_uid }}", api_version=api_version)
    assert "Pass 'v3' or 'v4' as a literal" in str(caught.value)
