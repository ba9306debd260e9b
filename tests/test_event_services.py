"""A DAG started by a Captain Data run event on real Airflow 3 services (api-server, scheduler,
dag-processor, triggerer), and the watermark across a real triggerer restart.

The run is started straight on the emulator (as Captain Data's app or a repeat schedule would);
the example DAG ``captaindata_event_scheduled`` must then run once per finished run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import wait_for

pytestmark = [pytest.mark.services, pytest.mark.airflow3, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

DAG_ID = "captaindata_event_scheduled"
WORKFLOW = "e5384e86-64ce-50b8-945d-903f83098906"  # the example's workflow (emulator seed 0)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from demo_services import (
        AirflowApi,
        airflow,
        airflow_env,
        free_port,
        migrate,
        start_airflow,
        start_emulator,
        supervised,
    )

    from airflow_provider_captaindata.emulator.client import EmulatorClient

    logs, dags = tmp_path / "logs", tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags_examples" / f"{DAG_ID}.py", dags)
    with supervised(logs) as supervisor:
        emulator_url = start_emulator(supervisor, {"v3_pending_seconds": 0.2, "v3_running_seconds": 1.0})
        emulator = EmulatorClient(emulator_url)
        api_port = free_port()
        connection = {**emulator.connection_json(), "conn_type": "captaindata"}
        env = airflow_env(
            api_port,
            connection,
            {"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "CAPTAINDATA_EXAMPLE_POLL_SECONDS": "1"},
            home=tmp_path / "airflow",
        )
        migrate(env, logs)
        start_airflow(supervisor, env, api_port)
        api = AirflowApi(f"http://127.0.0.1:{api_port}", logs)
        api.wait_until_up(supervisor)

        def restart_triggerer(while_down: Callable[[], None]) -> None:
            (old,) = [s for s in supervisor.services if s.name.startswith("triggerer")]
            os.killpg(old.proc.pid, signal.SIGTERM)
            old.proc.wait(60)
            supervisor.services.remove(old)
            while_down()
            supervisor.start("triggerer-2", airflow("triggerer", "--skip-serve-logs"), env)

        yield {"api": api, "emulator": emulator, "restart_triggerer": restart_triggerer, "logs": logs}
        api.close()
        emulator.close()


def start_run(emulator: Any, name: str) -> str:
    """A run of the workflow started on the emulator's API, not by Airflow."""
    headers = {"Authorization": f"x-api-key {emulator.api_key}", "x-project-id": emulator.project_uid}
    details = httpx.get(f"{emulator.v3_url}/workflows/{WORKFLOW}/details", headers=headers).json()
    body = {
        "job_name": name,
        "inputs": [
            {"linkedin_company_url": "https://www.linkedin.com/company/captaindata"},
            {"linkedin_company_url": "https://www.linkedin.com/company/apache"},
        ],
        "steps": [{"step_uid": details["steps"][0]["step_uid"]}],
    }
    answer = httpx.post(f"{emulator.v3_url}/workflows/{WORKFLOW}/schedule", json=body, headers=headers)
    answer.raise_for_status()
    return str(answer.json()["job_uid"])


def test_a_finished_run_starts_the_dag_once_across_a_triggerer_restart(services: dict[str, Any]) -> None:
    api, emulator = services["api"], services["emulator"]
    wait_for(lambda: _dag_exists(api), "the DAG to be parsed", 180, 1.0)
    api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    looks = f"/v3/workflows/{WORKFLOW}/jobs"
    wait_for(lambda: emulator.requests("GET", looks), "the watcher's first look", 180, 1.0)

    first = start_run(emulator, "started in the Captain Data app")
    (run,) = wait_for(lambda: _finished_runs(api, 1), "a DAG run from the event", 180, 1.0)
    assert run["run_type"] == "asset_triggered" and run["state"] == "success", run
    assert _triggering_runs(api, run) == [first]
    assert _rows(api, run) == 4  # 2 inputs x 2 rows, read by CaptainDataCollectRunOperator

    def finish_one_while_down() -> None:
        uid = start_run(emulator, "finished while the triggerer was down")
        status = lambda: emulator_status(emulator, uid) not in ("pending", "running")  # noqa: E731
        wait_for(status, "the run to finish", 30, 0.2)
        finished_while_down.append(uid)

    finished_while_down: list[str] = []
    services["restart_triggerer"](finish_one_while_down)
    runs = wait_for(
        lambda: _finished_runs(api, 2), "the DAG run of the run that finished meanwhile", 240, 1.0
    )
    assert [_triggering_runs(api, r) for r in runs] == [[first], finished_while_down]
    # Several more looks of the restarted watcher: neither run fires again.
    seen = len(emulator.requests("GET", looks))
    wait_for(lambda: len(emulator.requests("GET", looks)) >= seen + 5, "more looks", 60, 1.0)
    assert len(_dag_runs(api)) == 2
    # The restarted watcher read its watermark from the asset state store: no new baseline.
    logs = services["logs"]
    assert "before the first look" in (logs / "triggerer.log").read_text(errors="replace")
    assert "before the first look" not in (logs / "triggerer-2.log").read_text(errors="replace")


def emulator_status(emulator: Any, uid: str) -> str:
    headers = {"Authorization": f"x-api-key {emulator.api_key}", "x-project-id": emulator.project_uid}
    return str(httpx.get(f"{emulator.v3_url}/jobs/{uid}", headers=headers).json()["status"])


def _dag_exists(api: Any) -> bool:
    with contextlib.suppress(Exception):
        return bool(api.call("GET", f"/dags/{DAG_ID}"))
    return False


def _dag_runs(api: Any) -> list[dict[str, Any]]:
    runs = api.call("GET", f"/dags/{DAG_ID}/dagRuns", params={"order_by": "run_after"})["dag_runs"]
    return list(runs)


def _finished_runs(api: Any, count: int) -> list[dict[str, Any]] | None:
    runs = _dag_runs(api)
    if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
        return runs
    return None


def _triggering_runs(api: Any, run: dict[str, Any]) -> list[str]:
    path = f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
    events = api.call("GET", path)["asset_events"]
    return [e["extra"]["payload"]["run_uid"] for e in events]


def _rows(api: Any, run: dict[str, Any]) -> Any:
    path = f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/load/xcomEntries/return_value"
    return api.call("GET", path, params={"deserialize": True, "stringify": False})["value"]["rows"]
