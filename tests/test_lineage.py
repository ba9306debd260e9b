"""OpenLineage events of the operators, as the Airflow OpenLineage provider emits them.

The DAG runs (dag.test(), against the emulator) in a child interpreter configured the way a
deployment is: the provider's listener is registered by its plugin only when a transport is
set before Airflow starts, here a file transport. The test reads the events it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.client.catalog import get_action
from airflow_provider_captaindata.emulator.samples import sample_input
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

pytest.importorskip("airflow.providers.openlineage", reason="needs the openlineage extra")

from airflow_provider_captaindata.lineage import NAMESPACE, output_dataset_name

pytestmark = pytest.mark.usefixtures("airflow_db")

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "lineage_events"
PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/profile-{i}"} for i in range(3)]
SEARCH_URL = "https://www.linkedin.com/search/results/people/?keywords=data"


def child(workflow_uid: str, failing_uid: str, output_path: str, failing_inputs: list[Any]) -> None:
    """Runs in the child: one DAG with a workflow to a file, a live action to XCom and a
    workflow whose run fails."""
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
    from tests.airflow_helpers import make_dag, run_dag, task_states

    with make_dag(DAG_ID) as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="workflow_to_file",
            workflow_uid=workflow_uid,
            inputs=PROFILES,
            poll_interval=0.2,
            output_path=output_path,
            deferrable=True,  # the complete event comes from the resumed task (execute_complete)
        )
        CaptainDataRunActionOperator(
            task_id="action_to_xcom",
            action="linkedin-search-people",
            input={"linkedin_people_search_url": SEARCH_URL},
            max_results=5,
        )
        CaptainDataLaunchWorkflowOperator(
            task_id="workflow_fails", workflow_uid=failing_uid, inputs=failing_inputs, poll_interval=0.2
        )
    print("TASK_STATES=" + json.dumps(task_states(run_dag(dag))))


@dataclass
class Emitted:
    """What the child's DAG run emitted, and what the emulator says about it."""

    events: dict[tuple[str, str], dict[str, Any]]  # (task id, event type) -> event
    workflow_uid: str
    failing_uid: str
    output_path: str
    workflow_schema: dict[str, Any]  # output schema of the workflow's last step, from the API
    run_statuses: dict[str, str]  # v3 run uid -> status


@pytest.fixture(scope="module")
def emitted(captaindata_emulator_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Emitted:
    emulator = captaindata_emulator_session
    emulator.reset()
    with pytest.MonkeyPatch.context() as env:
        for name, value in emulator.airflow_env().items():
            env.setenv(name, value)
        emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=0.4, v3_rows_per_input=2)
        hook = CaptainDataHook()
        workflow_uid, failing_uid = [w.uid for w in hook.list_workflows() if len(w.steps) == 1][:2]
        emulator.force_outcome(failing_uid, "shutdown", error_message="LinkedIn cookie expired")
        folder = tmp_path_factory.mktemp("lineage")
        log = folder / "events.jsonl"
        output_path = f"file://{folder}/people.jsonl"
        child_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(log), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "tests",
            # A thread, not a fork of the task process (the provider's documented option).
            "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        }
        # The failing workflow gets inputs its input_schema accepts (checked before any launch).
        schema = hook.get_workflow_details(failing_uid).steps[0].input_schema
        failing_inputs = [sample_input(list(schema["properties"]))]
        args = f"{workflow_uid!r}, {failing_uid!r}, {output_path!r}, {failing_inputs!r}"
        done = subprocess.run(
            [sys.executable, "-c", f"from tests.test_lineage import child; child({args})"],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (states_line,) = [x for x in done.stdout.splitlines() if x.startswith("TASK_STATES=")]
        states = json.loads(states_line.removeprefix("TASK_STATES="))
        assert states == {
            "workflow_to_file": "success",
            "action_to_xcom": "success",
            "workflow_fails": "failed",
        }, done.stderr[-3000:]
        events: dict[tuple[str, str], dict[str, Any]] = {}
        for line in log.read_text().splitlines():
            event = json.loads(line)
            job = event["job"]["name"]
            if job.startswith(f"{DAG_ID}."):
                events[(job.split(".", 1)[1], event["eventType"])] = event
        steps = hook.get_workflow_details(workflow_uid).steps
        return Emitted(
            events=events,
            workflow_uid=workflow_uid,
            failing_uid=failing_uid,
            output_path=output_path,
            workflow_schema=(steps[-1].model_extra or {})["output_schema"],
            run_statuses={
                uid: hook.get_run("v3", uid).status
                for uid in (
                    e["run"]["facets"]["externalQuery"]["externalQueryId"]
                    for e in events.values()
                    if "externalQuery" in e["run"]["facets"]
                )
            },
        )


def fields(dataset: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(f["name"], f.get("type")) for f in dataset["facets"]["schema"]["fields"]]


def test_workflow_to_file_names_source_output_schema_and_run(emitted: Emitted) -> None:
    event = emitted.events[("workflow_to_file", "COMPLETE")]
    (source,) = event["inputs"]
    assert (source["namespace"], source["name"]) == (NAMESPACE, f"workflows/{emitted.workflow_uid}")
    properties = emitted.workflow_schema["properties"]
    assert fields(source) == [(name, prop["type"]) for name, prop in properties.items()]
    (output,) = event["outputs"]
    assert (output["namespace"], output["name"]) == ("file", emitted.output_path.removeprefix("file://"))
    assert fields(output) == fields(source)
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 6
    query = event["run"]["facets"]["externalQuery"]
    assert query["source"] == NAMESPACE
    assert emitted.run_statuses[query["externalQueryId"]] == "finished"
    # The start event already names the source and the file (no schema yet: an API call).
    started = emitted.events[("workflow_to_file", "START")]
    assert [d["name"] for d in started["inputs"] + started["outputs"]] == [source["name"], output["name"]]


def test_action_to_xcom_has_the_catalog_schema_and_no_output(emitted: Emitted) -> None:
    event = emitted.events[("action_to_xcom", "COMPLETE")]
    (source,) = event["inputs"]
    assert (source["namespace"], source["name"]) == (NAMESPACE, "actions/linkedin-search-people")
    spec = get_action("linkedin-search-people")
    assert spec is not None
    assert fields(source) == [(n, t.split(":")[0]) for n, t in spec.output_fields.items()]
    assert event["outputs"] == []
    assert "externalQuery" not in event["run"]["facets"]  # a live call has no run


def test_failed_run_has_an_error_facet_with_the_run_and_its_message(emitted: Emitted) -> None:
    event = emitted.events[("workflow_fails", "FAIL")]
    (source,) = event["inputs"]
    assert source["name"] == f"workflows/{emitted.failing_uid}"
    run_uid = event["run"]["facets"]["externalQuery"]["externalQueryId"]
    assert emitted.run_statuses[run_uid] == "shutdown"
    error = event["run"]["facets"]["errorMessage"]["message"]
    assert error == f"Captain Data run {run_uid} ended shutdown: LinkedIn cookie expired"
    assert ("workflow_fails", "COMPLETE") not in emitted.events


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("file:///data/people.jsonl", ("file", "/data/people.jsonl")),
        ("/data/people.jsonl", ("file", "/data/people.jsonl")),
        ("s3://aws_default@my-bucket/cd/people.jsonl", ("s3://my-bucket", "cd/people.jsonl")),
        ("gs://bucket/a/b.jsonl", ("gs://bucket", "a/b.jsonl")),
    ],
)
def test_output_dataset_follows_openlineage_naming(path: str, expected: tuple[str, str]) -> None:
    assert output_dataset_name(path) == expected


def test_parsing_a_dag_imports_no_lineage() -> None:
    """The operator modules a DAG file imports load neither OpenLineage nor our lineage or
    asset code (a fresh interpreter: this one has them all loaded)."""
    code = (
        "import sys, airflow_provider_captaindata.operators.workflows, "
        "airflow_provider_captaindata.operators.actions; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'openlineage' "
        "or m.startswith(('airflow_provider_captaindata.lineage', 'airflow_provider_captaindata.assets'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
