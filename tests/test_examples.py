"""Every example DAG in ``dags_examples/`` runs to success against the emulator (dag.test()).

The examples are loaded the way Airflow loads them (a DagBag over the folder, so an import
error fails here too) and run as they are, with only their environment knobs turned down:
short polls, short emulator runs, outputs under the test's temporary folder.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_helpers import run_dag, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")

EXAMPLES = Path(__file__).resolve().parent.parent / "dags_examples"
CALLBACK_SECRET = "example-tests-callback-secret-0123456789"
EXAMPLE_DAG_IDS = sorted(p.stem for p in EXAMPLES.glob("captaindata_*.py"))
# Rows each example's last task reports with the emulator's defaults (v3: 2 rows per input;
# v4: 1 result per input, searches cut at max_results).
EXPECTED_ROWS = {
    "captaindata_action_async": 5,
    "captaindata_action_fanout": 6,
    "captaindata_action_search": 25,
    "captaindata_asset_consumer": 4,
    "captaindata_asset_producer": 4,
    "captaindata_event_scheduled": 4,
    "captaindata_sensor": 4,
    "captaindata_v1_to_sql": 40,
    "captaindata_workflow_mapping": 8,
    "captaindata_workflow_to_storage": 4,
    "captaindata_workflow_xcom": 6,
}
# Examples that read what another one writes: that one runs first (the scheduler would start
# the consumer after the producer's asset event; tests/test_assets.py shows it does).
RUNS_AFTER = {"captaindata_asset_consumer": "captaindata_asset_producer"}


@pytest.fixture(scope="module")
def example_dags(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The examples as Airflow parses them; any import error fails every test."""
    try:  # Airflow 3
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag

    with pytest.MonkeyPatch.context() as env:
        # Read at parse time by the examples: poll often (the emulator's runs last a second)
        # and write result files under a temporary folder.
        env.setenv("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "0.3")
        env.setenv("CAPTAINDATA_EXAMPLE_OUTPUT_BASE", tmp_path_factory.mktemp("results").as_uri())
        bag = DagBag(dag_folder=str(EXAMPLES))
        assert bag.import_errors == {}, bag.import_errors
        yield bag.dags


class _Receiver:
    """The provider's callback receiver on a free loopback port (a thread), as the Airflow 3 API
    server would serve it under /captaindata: the async example needs somewhere to send pages."""

    def __init__(self, storage: str) -> None:
        import uvicorn

        from airflow_provider_captaindata.callbacks.app import create_app

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = create_app(secret=CALLBACK_SECRET, storage=storage)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the callback receiver did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[_Receiver]:
    server = _Receiver((tmp_path / "callbacks").as_uri())
    yield server
    server.stop()


@pytest.fixture
def emulator(
    captaindata_emulator: Any, receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The emulator with short runs, and the connection a demo user would have: a paid plan's
    live rate, and the callback receiver for async results."""
    captaindata_emulator.configure(
        v3_pending_seconds=0.1, v3_running_seconds=0.6, v4_queued_seconds=0.1, v4_running_seconds=0.6
    )
    conn = captaindata_emulator.connection_json()
    conn["extra"].update(
        rate_limit_per_second=20,
        callback_base_url=receiver.base_url,
        callback_secret=CALLBACK_SECRET,
        callback_storage=(tmp_path / "callbacks").as_uri(),
    )
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    # The warehouse of the v1 example (SQLite through the common SQL operators).
    warehouse = {"conn_type": "sqlite", "host": str(tmp_path / "warehouse.db")}
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_WAREHOUSE", json.dumps(warehouse))
    return captaindata_emulator


def test_every_example_is_tested(example_dags: dict[str, Any]) -> None:
    assert sorted(example_dags) == EXAMPLE_DAG_IDS == sorted(EXPECTED_ROWS)


def finished_company_run(emulator: Any) -> dict[str, Any]:
    """A run of the event example's workflow, started outside Airflow (as by Captain Data's app)."""
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

    workflow = "e5384e86-64ce-50b8-945d-903f83098906"
    hook = CaptainDataHook()
    step = hook.get_workflow_details(workflow).steps[0].step_uid
    urls = ["https://www.linkedin.com/company/captaindata", "https://www.linkedin.com/company/apache"]
    uid = hook.launch_workflow(
        workflow, inputs=[{"linkedin_company_url": u} for u in urls], steps=[{"step_uid": step}]
    ).job_uid
    deadline = time.monotonic() + 30
    while not hook.get_run("v3", uid).state.is_final:
        assert time.monotonic() < deadline, "the emulated run did not finish"
        time.sleep(0.1)
    return {"run_uid": uid}


# dag.test() makes no asset-triggered runs: the event example gets its run uid as run conf here
# (tests/test_event_services.py runs it from a real asset event).
RUN_CONF = {"captaindata_event_scheduled": finished_company_run}


@pytest.mark.parametrize("dag_id", EXAMPLE_DAG_IDS)
def test_example_runs_to_success(dag_id: str, example_dags: dict[str, Any], emulator: Any) -> None:
    if dag_id in RUNS_AFTER:
        assert set(task_states(run_dag(example_dags[RUNS_AFTER[dag_id]])).values()) == {"success"}
    dag_run = run_dag(example_dags[dag_id], RUN_CONF[dag_id](emulator) if dag_id in RUN_CONF else None)
    states = task_states(dag_run)
    assert set(states.values()) == {"success"}, states
    # Each example ends with one task reporting {"rows": ...}; the demo prints the same number.
    (leaf,) = [t.task_id for t in example_dags[dag_id].tasks if not t.downstream_list]
    assert xcom(dag_run, leaf)["rows"] == EXPECTED_ROWS[dag_id]


@pytest.mark.airflow3
def test_event_example_is_scheduled_by_the_run_finished_trigger(example_dags: dict[str, Any]) -> None:
    from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger

    dag = example_dags["captaindata_event_scheduled"]
    (asset,) = dag.timetable.asset_condition.objects  # schedule=[asset] is AssetAll(asset)
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, CaptainDataRunFinishedTrigger)
    assert watcher.trigger.serialize()[1]["workflow_uid"] == "e5384e86-64ce-50b8-945d-903f83098906"
