"""Asset (Airflow 2.11: Dataset) events of the operators' outlets, from real DAG runs
(dag.test()) against the emulator, read back from Airflow's own database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.assets import captaindata_asset, output_uri
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from tests import polling
from tests.airflow_helpers import AIRFLOW_3, make_dag, run_dag, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")

EXAMPLES = Path(__file__).resolve().parent.parent / "dags_examples"
PRODUCER, CONSUMER = "captaindata_asset_producer", "captaindata_asset_consumer"
PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/profile-{i}"} for i in range(3)]


@pytest.fixture
def emulator(captaindata_emulator: Any) -> Any:
    captaindata_emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=0.4, v3_rows_per_input=2)
    return captaindata_emulator


@pytest.fixture
def workflow_uid(emulator: Any) -> str:
    return next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)


def asset_events(dag_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(asset URI, extra) of every asset event the DAG's tasks produced."""
    from airflow.utils.session import create_session

    if AIRFLOW_3:
        from airflow.models.asset import AssetEvent as Event
    else:
        from airflow.models.dataset import DatasetEvent as Event  # type: ignore[no-redef]
    with create_session() as session:
        events = session.query(Event).filter(Event.source_dag_id == dag_id).all()
        return [(e.uri, dict(e.extra or {})) for e in events]


def run_registered(dag: Any) -> Any:
    """Run the DAG once its datasets are known to Airflow 2.11, as the DAG processor would have
    made them (2.11's dag.test() does not, and an event for an unknown dataset is dropped)."""
    if not AIRFLOW_3:
        from airflow.models.dag import DAG

        DAG.bulk_write_to_db([dag])
    return run_dag(dag)


def run_workflow(dag_id: str, workflow_uid: str, **op_kwargs: Any) -> Any:
    """A one-task DAG launching the workflow on PROFILES, run; returns the DagRun."""
    op_kwargs.setdefault("inputs", PROFILES)
    with make_dag(dag_id) as dag:
        CaptainDataLaunchWorkflowOperator(
            task_id="launch", workflow_uid=workflow_uid, poll_interval=0.2, **op_kwargs
        )
    return run_registered(dag)


def asset(uri: str) -> Any:
    from airflow.providers.common.compat.sdk import Asset

    return Asset(uri)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_workflow_file_asset_event_names_the_run(
    emulator: Any, workflow_uid: str, tmp_path: Path, deferrable: bool
) -> None:
    out = tmp_path / "people.jsonl"
    people = captaindata_asset(f"file://{out}")
    dag_id = f"assets_v3_file_{deferrable}"
    dag_run = run_workflow(
        dag_id, workflow_uid, deferrable=deferrable, output_path=f"file://{out}", outlets=[people]
    )
    assert task_states(dag_run) == {"launch": "success"}
    summary = xcom(dag_run, "launch")
    assert len(out.read_text().splitlines()) == summary["rows"] == 6
    assert asset_events(dag_id) == [
        (
            f"file://{out}",
            {
                "run_uid": summary["run_uid"],
                "api_version": "v3",
                "workflow_uid": workflow_uid,
                "rows": 6,
                "path": summary["path"],
            },
        )
    ]


def test_action_xcom_results_fill_every_asset_outlet(emulator: Any) -> None:
    dag_id = "assets_v4_xcom"
    with make_dag(dag_id) as dag:
        CaptainDataRunActionOperator(
            task_id="search",
            action="linkedin-search-people",
            input={"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?k=x"},
            max_results=7,
            outlets=[asset("captaindata://people/search"), asset("captaindata://people/copy")],
        )
    dag_run = run_registered(dag)
    assert len(xcom(dag_run, "search")) == 7
    extra = {
        "run_uid": None,
        "api_version": "v4",
        "action": "linkedin-search-people",
        "rows": 7,
        "path": None,
    }
    assert sorted(asset_events(dag_id)) == [
        ("captaindata://people/copy", extra),
        ("captaindata://people/search", extra),
    ]


def test_asset_alias_publishes_a_templated_output_path(
    emulator: Any, workflow_uid: str, tmp_path: Path
) -> None:
    from airflow.providers.common.compat.sdk import AssetAlias

    dag_id = "assets_v3_alias"
    dag_run = run_workflow(
        dag_id,
        workflow_uid,
        inputs=PROFILES[:1],
        output_path=f"file://{tmp_path}/{{{{ ti.task_id }}}}/people.jsonl",
        outlets=[AssetAlias("captaindata-people")],
    )
    summary = xcom(dag_run, "launch")
    ((uri, extra),) = asset_events(dag_id)
    assert uri == f"file://{tmp_path}/launch/people.jsonl" == summary["path"]
    assert extra["rows"] == 2 and extra["run_uid"] == summary["run_uid"]
    assert json.loads((tmp_path / "launch" / "people.jsonl").read_text().splitlines()[0])


def test_failed_run_produces_no_asset_event(emulator: Any, workflow_uid: str, tmp_path: Path) -> None:
    emulator.force_outcome(workflow_uid, "shutdown", error_message="cookie expired")
    dag_id = "assets_v3_failed"
    path = f"file://{tmp_path}/people.jsonl"
    dag_run = run_workflow(dag_id, workflow_uid, output_path=path, outlets=[captaindata_asset(path)])
    assert task_states(dag_run) == {"launch": "failed"}
    assert asset_events(dag_id) == []


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("/data/people.jsonl", "file:///data/people.jsonl"),
        ("file:///data/people.jsonl", "file:///data/people.jsonl"),
        ("s3://aws_default@my-bucket/cd/people.jsonl", "s3://my-bucket/cd/people.jsonl"),
        ("s3://my-bucket/cd/people.jsonl", "s3://my-bucket/cd/people.jsonl"),
    ],
)
def test_captaindata_asset_uri_is_the_output_path_without_its_connection(path: str, uri: str) -> None:
    assert output_uri(path) == uri
    assert captaindata_asset(path).uri == uri


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("file:///data/{{ run_id }}.jsonl", "templated"),
        ("data/people.jsonl", "absolute path"),
        ("", "output_path must be"),
    ],
)
def test_captaindata_asset_refuses_paths_no_asset_can_name(path: str, message: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=message):
        captaindata_asset(path)


@pytest.mark.services
@pytest.mark.airflow3
@pytest.mark.timeout(900)
def test_asset_event_starts_the_consumer_dag_on_real_services(
    captaindata_emulator: Any, tmp_path: Path
) -> None:
    """The two asset examples on a real api-server, scheduler and dag-processor (LocalExecutor,
    no triggerer: the producer waits on its worker): triggering the producer makes the
    scheduler start the consumer, which gets the run in the asset event's extra."""
    import shutil
    import sys

    sys.path.insert(0, str(EXAMPLES.parent / "scripts"))
    import demo_services as services

    captaindata_emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=0.5)
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in (PRODUCER, CONSUMER):
        shutil.copy(EXAMPLES / f"{name}.py", dags)
    port = services.free_port()
    env = services.airflow_env(
        port,
        captaindata_emulator.connection_json(),
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "CAPTAINDATA_EXAMPLE_POLL_SECONDS": "0.5",
            "CAPTAINDATA_EXAMPLE_OUTPUT_BASE": (tmp_path / "results").as_uri(),
        },
        home=tmp_path / "airflow",
    )
    logs = tmp_path / "logs"
    supervisor = services.Supervisor(logs)
    try:
        services.migrate(env, logs)
        # No triggerer: the producer waits on its worker (the example is not deferrable).
        services.start_airflow(supervisor, env, port, parts=("api-server", "scheduler", "dag-processor"))
        api = services.AirflowApi(f"http://{services.HOST}:{port}", logs)
        api.wait_until_up(supervisor)

        def wait_for(what: str, found: Any, timeout: float = 240.0) -> Any:
            # A service that exited fails the wait at once (supervisor.check raises).
            return polling.wait_for(
                lambda: supervisor.check() or found(), f"{what}; logs in {logs}", timeout, 1.0
            )

        wait_for(
            "parsed DAGs",
            lambda: {PRODUCER, CONSUMER} <= {d["dag_id"] for d in api.call("GET", "/dags")["dags"]},
        )
        for dag_id in (PRODUCER, CONSUMER):
            api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        api.call("POST", f"/dags/{PRODUCER}/dagRuns", json={"logical_date": None})

        def consumer_done() -> Any:
            runs = api.call("GET", f"/dags/{CONSUMER}/dagRuns")["dag_runs"]
            return runs if runs and runs[0]["state"] in ("success", "failed") else None

        (consumer_run,) = wait_for("finished consumer run", consumer_done)
        (producer_run,) = api.call("GET", f"/dags/{PRODUCER}/dagRuns")["dag_runs"]
        assert (producer_run["state"], consumer_run["state"]) == ("success", "success")
        assert consumer_run["run_type"] == "asset_triggered"

        def xcom_of(dag_id: str, run: dict[str, Any], task_id: str) -> Any:
            path = (
                f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/{task_id}/xcomEntries/return_value"
            )
            return api.call("GET", path, params={"deserialize": True, "stringify": False})["value"]

        written = xcom_of(PRODUCER, producer_run, "search_people")
        (event,) = api.call("GET", "/assets/events", params={"source_dag_id": PRODUCER})["asset_events"]
        assert event["extra"] == {
            "run_uid": written["run_uid"],
            "api_version": "v3",
            "workflow_uid": "238353ee-b428-5e29-80ce-feefc7b72cd8",
            "rows": 4,
            "path": written["path"],
        }
        loaded = xcom_of(CONSUMER, consumer_run, "load_people")
        assert loaded == {"rows": 4, "run_uid": written["run_uid"], "path": written["path"]}
        api.close()
    finally:
        supervisor.stop_all(quiet=True)
