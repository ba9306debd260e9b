"""v4 actions end to end: real DAGs (dag.test()) against the emulator over loopback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from airflow_provider_captaindata.operators.fanout import INPUT_TAG
from tests.airflow_helpers import make_dag, run_dag, task_output, task_states, xcom

pytestmark = pytest.mark.usefixtures("airflow_db")

EXTRACT = "linkedin-extract-people"
SEARCH = "linkedin-search-people"
SEARCH_URL = "https://www.linkedin.com/search/results/people/?keywords=data%20engineer"


def profiles(n: int) -> list[dict[str, Any]]:
    return [{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}"} for i in range(n)]


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = captaindata_emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 40
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    captaindata_emulator.configure(v4_queued_seconds=0.2, v4_running_seconds=1.0)
    return captaindata_emulator


def action_dag(dag_id: str, **op_kwargs: Any) -> Any:
    with make_dag(dag_id) as dag:
        CaptainDataRunActionOperator(task_id="action", poll_interval=0.3, **op_kwargs)
    return dag


def async_dag(dag_id: str, inputs: int = 3, **op_kwargs: Any) -> Any:
    """An async run of EXTRACT on ``inputs`` profiles, waited on deferrably; results go to a
    callback URL nobody listens on, so the task returns the final run."""
    return action_dag(
        dag_id,
        action=EXTRACT,
        inputs=profiles(inputs),
        mode="async",
        callback_url="http://127.0.0.1:9/cb",
        deferrable=True,
        **op_kwargs,
    )


def live_calls(emulator: Any, action: str = EXTRACT) -> list[dict[str, Any]]:
    return emulator.requests(method="POST", path=f"/v4/actions/{action}/run/live*")


def test_live_single_call_returns_the_object(emulator: Any) -> None:
    dag_run = run_dag(action_dag("v4_live_one", action=EXTRACT, input=profiles(1)[0]))
    assert task_states(dag_run) == {"action": "success"}
    result = xcom(dag_run, "action")
    assert isinstance(result, dict) and result
    assert len(live_calls(emulator)) == 1
    assert "inputs" not in live_calls(emulator)[0]["body"]


def test_search_capped_at_max_results_across_pages(emulator: Any) -> None:
    emulator.configure(v4_search_total_results=95)
    dag_run = run_dag(
        action_dag(
            "v4_search", action=SEARCH, input={"linkedin_people_search_url": SEARCH_URL}, max_results=23
        )
    )
    rows = xcom(dag_run, "action")
    assert len(rows) == 23
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == 23
    assert len(live_calls(emulator, SEARCH)) == 3  # 10 + 10 + 3: no page fetched past the cap


def test_search_without_cap_reads_to_the_last_page(emulator: Any, tmp_path: Path) -> None:
    emulator.configure(v4_search_total_results=35)
    out = tmp_path / "search.jsonl"
    dag_run = run_dag(
        action_dag(
            "v4_search_all",
            action=SEARCH,
            input={"linkedin_people_search_url": SEARCH_URL},
            output_path=str(out),
        )
    )
    assert xcom(dag_run, "action")["rows"] == 35
    assert len(out.read_text().splitlines()) == 35
    assert len(live_calls(emulator, SEARCH)) == 4


def test_fan_out_200_inputs_at_20_per_second(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 20
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    emulator.configure(rate_limit_per_second=20, live_latency_seconds=0.05)
    dag_run = run_dag(action_dag("v4_fanout", action=EXTRACT, inputs=profiles(200), max_concurrency=10))
    assert task_states(dag_run) == {"action": "success"}
    rows = xcom(dag_run, "action")
    assert [r["custom_data"][INPUT_TAG] for r in rows] == list(range(200))
    calls = live_calls(emulator)
    refused = sum(1 for c in calls if c["status"] == 429)
    assert len(calls) - refused == 200
    assert refused <= 10


def test_fan_out_below_one_request_per_second(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 2.5
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    assert task_states(run_dag(action_dag("v4_fanout_fast", action=EXTRACT, inputs=profiles(3)))) == {
        "action": "success"
    }
    conn["extra"]["rate_limit_per_second"] = 0.5
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    dag_run = run_dag(action_dag("v4_fanout_slow", action=EXTRACT, inputs=profiles(2)))
    assert task_states(dag_run) == {"action": "success"}
    calls = live_calls(emulator)
    assert len(calls) == 5 and calls[-1]["time"] - calls[-2]["time"] >= 1.5  # one call per 2 s


@pytest.mark.parametrize("on_input_error", ["fail", "continue"])
def test_per_input_errors(
    emulator: Any, on_input_error: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.add_fault(
        "POST",
        f"/v4/actions/{EXTRACT}/run/live",
        status=424,
        times=None,
        match_body="person-00003",
        error_label="NO_RESULTS",
        message="profile not found",
    )
    dag_run = run_dag(
        action_dag(
            f"v4_errors_{on_input_error}", action=EXTRACT, inputs=profiles(6), on_input_error=on_input_error
        )
    )
    if on_input_error == "fail":
        assert task_states(dag_run) == {"action": "failed"}
        out = task_output(caplog, capsys)
        assert "1 of 6 inputs failed" in out and "NO_RESULTS profile not found (HTTP 424, scope=" in out
        assert "ref=" in out
        return
    assert task_states(dag_run) == {"action": "success"}
    rows = xcom(dag_run, "action")
    assert sorted(r["custom_data"][INPUT_TAG] for r in rows) == [0, 1, 2, 4, 5]
    (error,) = xcom(dag_run, "action", "input_errors")
    assert (error["input_index"], error["error_label"], error["status_code"]) == (3, "NO_RESULTS", 424)
    assert len(live_calls(emulator)) == 6  # a 424 is an answer, not retried


def test_fan_out_with_a_bad_connection_fails_without_task_retries(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    conn = emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = "fast"
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    op = CaptainDataRunActionOperator(task_id="fan_out", action=EXTRACT, inputs=profiles(3))
    with pytest.raises(AirflowFailException, match="rate_limit_per_second"):
        op.execute({"ti": _XComSink(), "run_id": "r"})
    assert live_calls(emulator) == []


class _XComSink:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def test_async_run_of_1000_inputs_waits_deferrably(emulator: Any) -> None:
    dag_run = run_dag(async_dag("v4_async", inputs=1000))
    assert task_states(dag_run) == {"action": "success"}
    run = xcom(dag_run, "action")
    assert run["status"].upper() == "SUCCEEDED"
    assert run["uid"] == xcom(dag_run, "action", "run_uid")
    (launch,) = emulator.requests(method="POST", path=f"/v4/actions/{EXTRACT}/run/async")
    assert len(launch["body"]["inputs"]) == 1000


@pytest.mark.parametrize(
    ("status", "partial_success", "state"),
    [
        ("FAILED", "warn", "failed"),
        ("PARTIAL_SUCCEEDED", "warn", "success"),
        ("PARTIAL_SUCCEEDED", "fail", "failed"),
    ],
)
def test_async_final_statuses(emulator: Any, status: str, partial_success: str, state: str) -> None:
    emulator.force_outcome(EXTRACT, status, error_message="some inputs failed")
    dag = async_dag(f"v4_async_{status}_{partial_success}", partial_success=partial_success)
    assert task_states(run_dag(dag)) == {"action": state}


def test_task_retry_after_async_launch_does_not_launch_again(emulator: Any) -> None:
    emulator.add_fault("GET", "/v4/runs/*", status=403, times=1)
    dag = async_dag("v4_async_retry", retries=1, retry_delay=timedelta(0))
    assert task_states(run_dag(dag)) == {"action": "success"}
    assert len(emulator.requests(method="POST", path=f"/v4/actions/{EXTRACT}/run/async")) == 1


def test_async_launch_answered_5xx_is_looked_up_then_sent_again_in_the_same_try(emulator: Any) -> None:
    launch_path = f"/v4/actions/{EXTRACT}/run/async"
    emulator.add_fault("POST", launch_path, status=503, times=1)
    dag_run = run_dag(async_dag("v4_async_5xx"))
    assert task_states(dag_run) == {"action": "success"}
    paths = [(r["method"], r["path"]) for r in emulator.requests()]
    first, second = (i for i, p in enumerate(paths) if p == ("POST", launch_path))
    assert ("GET", "/v4/runs") in paths[first:second]  # looked up before sending again
    assert xcom(dag_run, "action", "run_uid") == xcom(dag_run, "action")["uid"]


def test_v4_sensor(emulator: Any) -> None:
    from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor

    run = CaptainDataHook().run_action_async(EXTRACT, profiles(2), callback_url="http://127.0.0.1:9/cb")
    with make_dag("v4_sensor") as dag:
        CaptainDataRunSensor(
            task_id="wait", run_uid=run.uid, api_version="v4", poke_interval=0.3, deferrable=True
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"wait": "success"}
    assert xcom(dag_run, "wait")["run_status"].upper() == "SUCCEEDED"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"input": {"linkedin_profile_url": "u"}, "inputs": profiles(1)}, "not both"),
        ({}, "not neither"),
        ({"inputs": profiles(1) * 100_001}, "100000"),
        ({"input": {"custom_data": {}}}, "linkedin_profile_url"),
        ({"inputs": [{"linkedin_profile_url": "u"}, {}]}, r"inputs\[1\]"),
        ({"input": {"linkedin_profile_url": "u"}, "identity_mode": "direct"}, "identity_ids"),
        ({"input": {"linkedin_profile_url": "u"}, "max_concurrency": 0}, "max_concurrency"),
        ({"input": {"linkedin_profile_url": "u"}, "mode": "batch"}, "mode"),
        (
            {"action": "linkedin-extract-peple", "input": {"linkedin_profile_url": "u"}},
            "linkedin-extract-people",
        ),
        ({"input": {"linkedin_profile_url": "u"}, "parameters": ["skills"]}, "parameters"),
        ({"input": {"linkedin_profile_url": "u"}, "identity_ids": "identity-1"}, "identity_ids"),
        ({"input": {"linkedin_profile_url": "u"}, "integration_users": [1]}, "integration_users"),
        ({"inputs": profiles(1), "mode": "async", "callback_url": "ftp://host/cb"}, "callback_url"),
        ({"inputs": profiles(1), "mode": "async", "callback_url": "/cb"}, "callback_url"),
        (
            {
                "inputs": profiles(1),
                "mode": "async",
                "callback_url": "https://h/cb",
                "callback_headers": {"a": 1},
            },
            "callback_headers",
        ),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=name):
        CaptainDataRunActionOperator(task_id="t", **{"action": EXTRACT, **kwargs})


@pytest.mark.parametrize(
    ("field", "rendered"),
    [
        ("callback_url", "ftp://host/cb"),
        ("callback_headers", '{"X-Token": 1}'),
        ("identity_ids", '"identity-1"'),
        ("parameters", "[1]"),
    ],
)
def test_bad_rendered_values_fail_before_any_call(emulator: Any, field: str, rendered: str) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = CaptainDataRunActionOperator(
        task_id="t",
        action=EXTRACT,
        inputs=profiles(1),
        mode="async",
        **{"callback_url": "https://hooks.example.com/cb", field: "{{ params.value }}"},
    )
    setattr(op, field, rendered)  # as Airflow's rendering leaves it
    emulator.clear_requests()

    class TI:
        dag_id, task_id, map_index = "d", "t", -1

        def xcom_push(self, key: str, value: Any) -> None: ...

    with pytest.raises(AirflowFailException, match=field):
        op.execute({"ti": TI(), "run_id": "r"})
    assert emulator.requests() == []


def test_the_final_run_in_xcom_carries_no_signed_url_token(emulator: Any) -> None:
    # From a review: with the author's callback_url the task returns the final run, whose last
    # error may name a signed URL (another launch's page): its token stays out of XCom.
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
