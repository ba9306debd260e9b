"""The fault matrix: every injected fault against every kind of call, over real HTTP.

Faults (the emulator's fault injection): a 429 with ``Retry-After``; a 503; and three where the
API did its work before the answer went wrong: the answer comes after the read timeout, the
connection drops, or a 200 carries truncated JSON. Calls: a v3 launch, a v4 async launch, a
status poll (the trigger's async hook), a results page (v3), a live read page (a search), a
live write call (a LinkedIn message).

What must hold: a launch makes exactly one run; a poll reads the run; pages give exactly the
run's rows, none lost or doubled; a live write acts at most once per input (answered, or
``CaptainDataOutcomeUnknown``), never twice. docs/retries.md has the table.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import OUTCOME_UNKNOWN, CaptainDataOutcomeUnknown
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

POLICY = RetryPolicy(
    attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=0.5, launch_lookup_delay=0.1
)
EXTRACT = "linkedin-extract-people"
SEARCH = "linkedin-search-people"
MESSAGE = "linkedin-message-profile"
SEARCH_INPUT = {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=x"}
PROFILE = {"linkedin_profile_url": "https://www.linkedin.com/in/person-00000"}

FAULTS: dict[str, dict[str, Any]] = {
    "429-retry-after": {"status": 429, "retry_after": 0.2},
    "503": {"status": 503},
    "timeout-after-acting": {"delay": 1.0},  # processed; answered past the 0.5 s read timeout
    "drop-after-acting": {"drop": True, "after": True},
    "truncated-after-acting": {"malformed": True, "after": True},
}
# A fault "after acting" the client cannot tell from one before: only these three.
ACTED = {"timeout-after-acting", "drop-after-acting", "truncated-after-acting"}


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = captaindata_emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 40
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    captaindata_emulator.configure(
        v3_pending_seconds=0.05,
        v3_running_seconds=0.1,
        v3_rows_per_input=3,
        v3_page_size=2,
        v4_search_total_results=25,
    )
    return captaindata_emulator


@pytest.fixture
def hook(emulator: Any) -> CaptainDataHook:
    return CaptainDataHook(retry_policy=POLICY)


def _v3_launch(hook: CaptainDataHook, emulator: Any, fault: str) -> None:
    workflow = next(w.uid for w in hook.list_workflows() if len(w.steps) == 1)
    steps = [{"step_uid": hook.get_workflow_details(workflow).steps[0].step_uid}]
    emulator.add_fault("POST", "/v3/workflows/*/schedule", **FAULTS[fault])
    uid = hook.launch_workflow_once(workflow, job_name=f"matrix-{fault}", inputs=[PROFILE], steps=steps)
    named = [r.uid for r in hook.list_workflow_runs(workflow) if r.name == f"matrix-{fault}"]
    assert named == [uid]


def _v4_launch(hook: CaptainDataHook, emulator: Any, fault: str) -> None:
    emulator.add_fault("POST", f"/v4/actions/{EXTRACT}/run/async", **FAULTS[fault])
    tag = f"matrix{fault.replace('-', '')}"
    uid = hook.run_action_async_once(
        EXTRACT, [PROFILE], callback_url=f"http://127.0.0.1:9/cb?tag={tag}", launch_tag=tag
    )
    runs = [r.uid for r in hook.list_action_runs(action_name=EXTRACT, execution_mode="ASYNC")]
    assert runs == [uid]


def _status_poll(hook: CaptainDataHook, emulator: Any, fault: str) -> None:
    run_uid = hook.run_action_async(EXTRACT, [PROFILE], callback_url="http://127.0.0.1:9/cb").uid
    emulator.add_fault("GET", f"/v4/runs/{run_uid}", **FAULTS[fault])
    snapshot = asyncio.run(CaptainDataAsyncHook(retry_policy=POLICY).get_run("v4", run_uid))
    assert snapshot.uid == run_uid
    assert len(emulator.requests(method="POST", path="/v4/actions/*")) == 1


def _finished_v3_run(hook: CaptainDataHook) -> str:
    workflow = next(w.uid for w in hook.list_workflows() if len(w.steps) == 1)
    steps = [{"step_uid": hook.get_workflow_details(workflow).steps[0].step_uid}]
    uid = hook.launch_workflow(workflow, job_name="rows", inputs=[PROFILE, PROFILE], steps=steps).job_uid
    deadline = time.monotonic() + 10
    while hook.get_workflow_run(uid).status != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return uid


def _pages_with_fault_on_the_second(
    emulator: Any, method: str, path: str, fault: str, pages: Callable[[], Any]
) -> list[Any]:
    """Every row, read once cleanly and once with the fault on the second page: the same rows."""
    clean = [row for page in pages() for row in page]
    stream = pages()
    rows = list(next(stream))
    emulator.add_fault(method, path, **FAULTS[fault])
    rows += [row for page in stream for row in page]
    assert emulator.faults()[-1]["remaining"] == 0  # the fault did hit a page
    assert rows == clean
    return rows


def _results_page(hook: CaptainDataHook, emulator: Any, fault: str) -> None:
    uid = _finished_v3_run(hook)
    rows = _pages_with_fault_on_the_second(
        emulator, "GET", f"/v3/jobs/{uid}/results", fault, lambda: hook.iter_workflow_results(uid)
    )
    assert len(rows) == 6  # 2 inputs x 3 rows, in pages of 2


def _live_read_page(hook: CaptainDataHook, emulator: Any, fault: str) -> None:
    rows = _pages_with_fault_on_the_second(
        emulator,
        "POST",
        f"/v4/actions/{SEARCH}/run/live",
        fault,
        lambda: hook.iter_live_pages(SEARCH, SEARCH_INPUT),
    )
    assert len(rows) == 25 and len({json.dumps(r, sort_keys=True) for r in rows}) == 25


def _live_write(hook: CaptainDataHook, emulator: Any, fault: str) -> None:
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", **FAULTS[fault])
    try:
        answer: Any = hook.run_action_live(MESSAGE, PROFILE)
    except CaptainDataOutcomeUnknown as exc:
        answer = exc
    acted = hook.list_action_runs(action_name=MESSAGE, execution_mode="LIVE")
    sent = emulator.requests(method="POST", path=f"/v4/actions/{MESSAGE}/run/live")
    if fault == "429-retry-after":  # refused before any work: sent again, acted once
        assert isinstance(answer, dict) and len(sent) == 2 and len(acted) == 1
        return
    assert isinstance(answer, CaptainDataOutcomeUnknown) and OUTCOME_UNKNOWN in str(answer)
    assert len(sent) == 1  # never re-sent
    assert len(acted) == (1 if fault in ACTED else 0)


CALLS = {
    "v3-launch": _v3_launch,
    "v4-async-launch": _v4_launch,
    "status-poll": _status_poll,
    "results-page": _results_page,
    "live-read-page": _live_read_page,
    "live-write": _live_write,
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_matrix(hook: CaptainDataHook, emulator: Any, call: str, fault: str) -> None:
    CALLS[call](hook, emulator, fault)


# -- the retry path, in real DAG runs ----------------------------------------------------------


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("fault", sorted(ACTED - {"timeout-after-acting"}))
def test_fan_out_write_with_task_retries_sends_each_input_once(emulator: Any, fault: str) -> None:
    """Input 1's answer is lost after it acted; with a task retry, no input is sent twice."""
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from tests.airflow_helpers import make_dag, run_dag, task_states

    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", match_body="person-00001", **FAULTS[fault])
    inputs = [{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}"} for i in range(3)]
    with make_dag(f"matrix_retry_{fault.replace('-', '_')}") as dag:
        CaptainDataRunActionOperator(
            task_id="message", action=MESSAGE, inputs=inputs, retries=1, retry_delay=timedelta(0)
        )
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"message": "failed"}  # input 1 stays outcome unknown
    sent = [
        c["body"]["input"]["linkedin_profile_url"] for c in emulator.requests(method="POST", path="/v4/*")
    ]
    assert sorted(sent) == sorted(i["linkedin_profile_url"] for i in inputs)
