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
from tests.airflow_helpers import AIRFLOW_3, AIRFLOW_3_3, make_dag, run_dag, task_output, task_states, xcom

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


def _store_in_metadata_db(conn_id: str, emulator: Any) -> None:
    """What `airflow connections add` and the UI do: the connection lives in the database."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type="captaindata",
                host=emulator.base_url,
                password=emulator.api_key,
                extra={"project_uid": emulator.project_uid},
            )
        )


@pytest.mark.airflow3
@pytest.mark.usefixtures("airflow_db")
def test_dags_test_with_a_database_connection_fails_before_launching(
    workflow_uid: str, captaindata_emulator: Any, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    """Under dags test the trigger cannot read a metadata-database connection: without the
    check the task launched the run, then the trigger failed (an orphan run on the real API)."""
    _store_in_metadata_db("captaindata_db_only", captaindata_emulator)
    with make_dag("first_hour_db_connection_trap") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch",
            workflow_uid=workflow_uid,
            inputs=PROFILES,
            deferrable=True,
            poll_interval=0.2,
            captaindata_conn_id="captaindata_db_only",
        )
    dag_run = run_dag(dag)
    out = task_output(caplog, capsys)
    launches = captaindata_emulator.requests(method="POST", path="/v3/workflows/*/schedule")
    if not AIRFLOW_3_3:
        # Before 3.3, dags test runs the trigger where the metadata database is read too: no
        # trap, so the task launches once and its trigger finds the connection.
        assert task_states(dag_run) == {"launch": "success"} and len(launches) == 1
        return
    assert task_states(dag_run) == {"launch": "failed"}
    assert not launches, "launched"
    assert "Connection 'captaindata_db_only' cannot be read where this deferred task's trigger runs" in out
    assert "Export the connection as AIRFLOW_CONN_CAPTAINDATA_DB_ONLY" in out


@pytest.mark.usefixtures("airflow_db")
def test_a_database_connection_still_serves_a_task_that_waits_on_the_worker(
    workflow_uid: str, captaindata_emulator: Any
) -> None:
    _store_in_metadata_db("captaindata_db_only", captaindata_emulator)
    with make_dag("first_hour_db_connection_worker") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch",
            workflow_uid=workflow_uid,
            inputs=PROFILES,
            deferrable=False,
            poll_interval=0.2,
            captaindata_conn_id="captaindata_db_only",
        )
    assert task_states(run_dag(dag)) == {"launch": "success"}


def test_the_testing_page_quotes_the_trap_error_word_for_word() -> None:
    from pathlib import Path

    from airflow_provider_captaindata.preflight import TRIGGER_CANNOT_READ_CONNECTION

    message = TRIGGER_CANNOT_READ_CONNECTION.format(
        conn_id="captaindata_default",
        cause="AirflowNotFoundException: The conn_id `captaindata_default` isn't defined",
        env_name="AIRFLOW_CONN_CAPTAINDATA_DEFAULT",
    )
    assert message in (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()


def test_the_emulator_cli_prints_what_it_serves() -> None:
    import os
    import subprocess
    import sys

    from airflow_provider_captaindata.client.catalog import input_problems
    from airflow_provider_captaindata.emulator.samples import SAMPLE_ACTIONS, SAMPLE_VALUES
    from airflow_provider_captaindata.emulator.v3 import seed_workflows

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_captaindata.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith(f"  {SAMPLE_ACTIONS[-1]}"):
            line = proc.stdout.readline()
            assert line, "\n".join(lines)  # the CLI ended before printing its last sample
            lines.append(line.rstrip("\n"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    out = "\n".join(lines)
    assert lines[0].startswith("http://127.0.0.1:") and lines[3].startswith("export AIRFLOW_CONN_")
    for workflow in seed_workflows(0):
        assert f"  {workflow.uid}  {workflow.name}" in out, out
    for action in SAMPLE_ACTIONS:
        assert f"  {action}  input=" in out, out
    # Every sample is one the API accepts (the catalog's patterns, as the emulator checks them).
    for action in SAMPLE_ACTIONS:
        from airflow_provider_captaindata.client.catalog import get_action

        spec = get_action(action)
        assert spec is not None
        sample = {name: SAMPLE_VALUES[name] for name in spec.input_fields}
        assert not input_problems(action, sample, check_patterns=True), action


@pytest.mark.usefixtures("airflow_db")
def test_a_misspelled_v3_input_field_fails_before_the_launch_naming_it(
    workflow_uid: str, captaindata_emulator: Any, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    with make_dag("first_hour_v3_input_schema") as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch",
            workflow_uid=workflow_uid,
            inputs=[{"linkedin_profil_url": "https://www.linkedin.com/in/someone"}],
            deferrable=False,
        )
    dag_run = run_dag(dag)
    out = task_output(caplog, capsys)
    assert task_states(dag_run) == {"launch": "failed"}
    assert "inputs[0]: unknown input field 'linkedin_profil_url'" in out, out[-3000:]
    assert "Did you mean 'linkedin_profile_url'?" in out
    assert not captaindata_emulator.requests(method="POST", path="/v3/workflows/*/schedule")


def test_v3_inputs_are_checked_with_one_details_call(workflow_uid: str, captaindata_emulator: Any) -> None:
    from airflow_provider_captaindata.preflight import check_inputs_against_schema

    op = CaptainDataLaunchWorkflowOperator(task_id="t", workflow_uid=workflow_uid, inputs=PROFILES)
    steps = op._default_steps()
    op._check_inputs_schema(steps[0]["step_uid"])
    assert len(captaindata_emulator.requests(method="GET", path=f"/v3/workflows/{workflow_uid}/details")) == 1
    schema = op._details().steps[0].input_schema
    with pytest.raises(CaptainDataConfigError, match=r"inputs\[1\]: 'linkedin_profile_url' is a required"):
        check_inputs_against_schema("inputs", [*PROFILES, {}], schema, workflow_uid)
    with pytest.raises(CaptainDataConfigError, match=r"inputs\[0\]\['linkedin_profile_url'\]: 3 is not"):
        check_inputs_against_schema("inputs", [{"linkedin_profile_url": 3}], schema, workflow_uid)
    check_inputs_against_schema("inputs", PROFILES, None, workflow_uid)  # no schema: nothing to check
