"""The final run a task returns to XCom loses any signed URL token (issue 22, from a review).

``ApiVersion.snapshot`` scrubs the message of the run it reads (trigger events, task errors),
but an async action whose results go to the author's ``callback_url`` returns the final run
(``CaptainDataRunActionOperator.collect``: ``get_action_run(...).model_dump()``), and that
XCom value kept ``last_error.message`` as the API wrote it. A PARTIAL_SUCCEEDED run whose error
names a signed receiver URL (another launch's page, a webhook) puts its token in XCom, where
anyone who can read the DAG run's XCom sees it. Real Airflow (dag.test()) against the emulator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from tests.airflow_helpers import run_dag, task_states, xcom
from tests.test_actions import EXTRACT, async_dag

pytestmark = pytest.mark.usefixtures("airflow_db")


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = captaindata_emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 40
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    captaindata_emulator.configure(v4_queued_seconds=0.2, v4_running_seconds=1.0)
    return captaindata_emulator


def test_the_final_run_in_xcom_carries_no_signed_url_token(emulator: Any) -> None:
    signed = callback_url_for(
        "https://airflow.example.com/captaindata", "a-strong-secret-0123456789", "ab" * 12
    )
    token = signed.rsplit("/", 1)[1]
    emulator.force_outcome(EXTRACT, "PARTIAL_SUCCEEDED", error_message=f"page 2 to {signed} answered 502")
    dag_run = run_dag(async_dag("final_run_token_scrubbed", inputs=3))
    assert task_states(dag_run) == {"action": "success"}  # partial_success="warn"
    final = xcom(dag_run, "action")
    assert "answered 502" in json.dumps(final)  # the run's error is in the XCom value
    assert token not in json.dumps(final), f"XCom return_value carries the token: {final.get('last_error')}"
