"""v4 async runs whose results come back through the provider's callback receiver (dag.test())."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks.app import create_app
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from tests.airflow_helpers import make_dag, run_dag, task_output, task_states, xcom
from tests.callbacks.conftest import SECRET, ServerThread

pytestmark = pytest.mark.usefixtures("airflow_db")

EXTRACT = "linkedin-extract-people"


def profiles(n: int) -> list[dict[str, Any]]:
    return [
        {"linkedin_profile_url": f"https://www.linkedin.com/in/p-{i:05d}", "custom_data": {"row": i}}
        for i in range(n)
    ]


@pytest.fixture
def receiver_conn(
    captaindata_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A standalone receiver on loopback, and the connection pointing async launches at it."""
    folder = tmp_path / "callbacks"
    server = ServerThread(create_app(secret=SECRET, storage=folder.as_uri()))
    conn = captaindata_emulator.connection_json()
    conn["extra"].update(
        callback_base_url=server.base_url, callback_secret=SECRET, callback_storage=folder.as_uri()
    )
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    captaindata_emulator.configure(v4_queued_seconds=0.2, v4_running_seconds=1.0, v4_results_per_input=1)
    try:
        yield folder
    finally:
        server.stop()


def async_dag(dag_id: str, **kwargs: Any) -> Any:
    with make_dag(dag_id) as dag:
        CaptainDataRunActionOperator(
            task_id="action", action=EXTRACT, mode="async", deferrable=True, poll_interval=0.3, **kwargs
        )
    return dag


def test_1000_inputs_every_row_once_to_xcom(receiver_conn: Path) -> None:
    dag_run = run_dag(async_dag("v4_async_rows", inputs=profiles(1000), max_xcom_bytes=50_000_000))
    assert task_states(dag_run) == {"action": "success"}
    rows = xcom(dag_run, "action")
    assert sorted(r["custom_data"]["row"] for r in rows) == list(range(1000))
    summary = xcom(dag_run, "action", "callback_summary")
    assert summary["pages_missing"] == 0 and summary["pages_received"] == summary["pages_expected"]


def test_faulty_deliveries_are_replayed_and_rows_stay_exact(
    captaindata_emulator: Any,
    receiver_conn: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    captaindata_emulator.configure(
        callback_drop_rate=0.05, callback_duplicate_rate=0.05, callback_fail_rate=0.05, callback_reorder=True
    )
    out = tmp_path / "async.jsonl"
    dag_run = run_dag(async_dag("v4_async_faults", inputs=profiles(300), output_path=out.as_uri()))
    assert task_states(dag_run) == {"action": "success"}
    summary = xcom(dag_run, "action")
    assert summary["rows"] == 300 and summary["pages_replayed"] > 0 and summary["pages_missing"] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["custom_data"]["row"] for r in rows) == list(range(300))
    assert "replay" in task_output(caplog, capsys).lower()


def test_async_with_results_but_no_receiver_fails_before_launch(captaindata_emulator: Any) -> None:
    dag_run = run_dag(async_dag("v4_async_noreceiver", inputs=profiles(2)))
    assert task_states(dag_run) == {"action": "failed"}
    assert captaindata_emulator.requests(method="POST") == []
