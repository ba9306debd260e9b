"""One run per task instance, whatever fails: a lost launch answer, a failed try, a kill in
the middle of a launch, an Airflow 2 task killed on resuming from a deferral; and no page
dropped or half-written: v3 paging read to its documented end, a results file that never
holds part of a run.

Unit style against the emulator: each "try" is a fresh operator instance calling
``execute`` with the same ``task_state_store`` (what Airflow 3.3 keeps across tries), or
none (Airflow before 3.3, where the run is found by its name or tag).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import (
    CaptainDataPagingError,
    CaptainDataRunError,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from tests.airflow_helpers import current_context

FAST = RetryPolicy(attempts=2, backoff_initial=0.05, backoff_max=0.1, read_timeout=5.0)
PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/profile-{i}"} for i in range(2)]
EXTRACT = "linkedin-extract-people"
V3_LAUNCH = "/v3/workflows/*/schedule"
V4_LAUNCH = f"/v4/actions/{EXTRACT}/run/async"


class StateStore:
    """Airflow 3.3's task_state_store: values survive tries; like the real accessor, it
    refuses None (``delete`` removes a key) and keeps JSON only."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class TaskInstance:
    dag_id = "guarantees"
    task_id = "launch"
    map_index = -1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, map_indexes) == (self.task_id, self.map_index)
        return self.xcom.get(key)


def new_context(store: StateStore | None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": TaskInstance(), "run_id": "manual__guarantees"}
    if store is not None:
        context["task_state_store"] = store
    return context


def with_hook(op: Any) -> Any:
    op.__dict__["hook"] = CaptainDataHook(retry_policy=FAST)  # fills the cached_property
    return op


@pytest.fixture
def hook(captaindata_emulator: Any) -> CaptainDataHook:
    captaindata_emulator.configure(v3_pending_seconds=0.05, v3_running_seconds=0.2, v3_rows_per_input=1)
    return CaptainDataHook(retry_policy=FAST)


@pytest.fixture
def workflow_uid(hook: CaptainDataHook) -> str:
    return next(w.uid for w in hook.list_workflows() if len(w.steps) == 1)


def v3_operator(workflow_uid: str, **kwargs: Any) -> CaptainDataLaunchWorkflowOperator:
    kwargs = {"poll_interval": 0.1, "deferrable": False, "inputs": PROFILES, **kwargs}
    return with_hook(
        CaptainDataLaunchWorkflowOperator(task_id=TaskInstance.task_id, workflow_uid=workflow_uid, **kwargs)
    )


def v4_operator(**kwargs: Any) -> CaptainDataRunActionOperator:
    return with_hook(
        CaptainDataRunActionOperator(
            task_id=TaskInstance.task_id,
            action=EXTRACT,
            inputs=PROFILES,
            mode="async",
            callback_url="http://127.0.0.1:9/cb",
            poll_interval=0.1,
            deferrable=False,
            **kwargs,
        )
    )


def in_progress(hook: CaptainDataHook, workflow_uid: str) -> list[str]:
    return [j.uid for j in hook.list_workflow_runs(workflow_uid) if j.status in ("pending", "running")]


@pytest.mark.parametrize("with_store", [True, False], ids=["task_state_store", "lookup-by-name"])
def test_v3_run_a_failed_try_launched_unrecorded_is_resumed(
    captaindata_emulator: Any, hook: CaptainDataHook, workflow_uid: str, with_store: bool
) -> None:
    store = StateStore() if with_store else None
    # Try 1: run A ends "shutdown"; the try fails, A is what the store remembers.
    captaindata_emulator.force_outcome(workflow_uid, "shutdown", error_message="technical error")
    with pytest.raises(CaptainDataRunError, match="shutdown"):
        v3_operator(workflow_uid).execute(new_context(store))
    # Try 2's launch created run B, but the try died before recording it (a lost answer and a
    # failed lookup, or a killed worker): B exists under the task's job name only.
    captaindata_emulator.configure(v3_running_seconds=60)
    op = v3_operator(workflow_uid)
    run_b = hook.launch_workflow(
        workflow_uid,
        job_name=op.run_name(new_context(store)),
        inputs=PROFILES,
        steps=[{"step_uid": hook.get_workflow_details(workflow_uid).steps[0].step_uid}],
    ).job_uid
    # Try 3 waits on B instead of launching run C.
    assert v3_operator(workflow_uid, wait_for_completion=False).execute(new_context(store)) == run_b
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 2
    assert in_progress(hook, workflow_uid) == [run_b]


def test_v4_run_a_failed_try_launched_unrecorded_is_resumed(
    captaindata_emulator: Any, hook: CaptainDataHook
) -> None:
    store = StateStore()
    captaindata_emulator.force_outcome(EXTRACT, "FAILED", error_message="technical error")
    with pytest.raises(CaptainDataRunError, match="FAILED"):
        v4_operator().execute(new_context(store))
    captaindata_emulator.configure(v4_running_seconds=60)
    context = new_context(store)
    run_b = hook.run_action_async(
        EXTRACT, PROFILES, callback_url=v4_operator().callback_url_for_launch(context)
    ).uid
    assert v4_operator(wait_for_completion=False).execute(new_context(store)) == run_b
    assert len(captaindata_emulator.requests(method="POST", path=V4_LAUNCH)) == 2


def test_kill_while_the_launch_is_in_flight_stops_the_run_it_created(
    captaindata_emulator: Any, hook: CaptainDataHook, workflow_uid: str
) -> None:
    captaindata_emulator.configure(v3_running_seconds=60)
    # The emulator creates the run at once and answers 2 s later: the kill lands in between.
    captaindata_emulator.add_fault("POST", V3_LAUNCH, delay=2.0, times=1)
    op = v3_operator(workflow_uid)
    context = new_context(None)
    seen_in_flight: list[str | None] = []

    def kill_once_launch_is_sent() -> None:  # Airflow calls on_kill from a signal handler
        deadline = time.monotonic() + 5
        while not captaindata_emulator.requests(method="POST", path=V3_LAUNCH):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        seen_in_flight.append(op._run_uid)  # None: the answer has not arrived yet
        with current_context(context):
            op.on_kill()

    killer = threading.Thread(target=kill_once_launch_is_sent)
    killer.start()
    with pytest.raises(CaptainDataRunError) as info:  # the run was stopped under the task
        op.execute(context)
    killer.join(timeout=10)
    assert seen_in_flight == [None]  # only a lookup could find the run
    (stop,) = captaindata_emulator.requests(method="POST", path="/v3/jobs/*/cancel")
    run_uid = stop["path"].split("/")[3]
    assert hook.get_workflow_run(run_uid).status == "stopped"
    assert run_uid in str(info.value) and "stopped" in str(info.value)


def test_on_kill_of_an_instance_resumed_from_a_deferral_stops_the_run(
    captaindata_emulator: Any, hook: CaptainDataHook, workflow_uid: str
) -> None:
    # Airflow 2 resumes a deferred task on a new operator instance and, when execution_timeout
    # passed while deferred, calls its on_kill before execute_complete: that instance only has
    # the run uid the first instance pushed to XCom.
    captaindata_emulator.configure(v3_running_seconds=60)
    context = new_context(None)
    run_uid = v3_operator(workflow_uid, wait_for_completion=False).execute(context)
    resumed = v3_operator(workflow_uid)
    with current_context(context):
        resumed.on_kill()
    assert hook.get_workflow_run(run_uid).status == "stopped"


def test_on_kill_before_any_launch_stops_nothing(captaindata_emulator: Any, workflow_uid: str) -> None:
    with current_context(new_context(None)):
        v3_operator(workflow_uid).on_kill()
    assert captaindata_emulator.requests(method="POST") == []


def test_results_file_never_holds_part_of_a_run(
    captaindata_emulator: Any, hook: CaptainDataHook, workflow_uid: str, tmp_path: Path
) -> None:
    captaindata_emulator.configure(v3_total_rows=50, v3_page_size=10)
    out = tmp_path / "rows.jsonl"
    store = StateStore()

    class DiesOnPage3(CaptainDataHook):
        def iter_workflow_results(self, job_uid: str) -> Any:
            for n, page in enumerate(super().iter_workflow_results(job_uid)):
                if n == 2:
                    raise CaptainDataTransportError("connection dropped", sent=True)
                yield page

    op = v3_operator(workflow_uid, output_path=f"file://{out}")
    op.__dict__["hook"] = DiesOnPage3(retry_policy=FAST)
    with pytest.raises(CaptainDataTransportError):
        op.execute(new_context(store))
    assert list(tmp_path.iterdir()) == []  # 20 rows were written, none at the path, none left

    summary = v3_operator(workflow_uid, output_path=f"file://{out}").execute(new_context(store))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["row_index"] for r in rows) == list(range(50))
    assert summary["rows"] == 50 and [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 1


@pytest.mark.parametrize(
    ("paging", "next_url"),
    [
        ({"next": "https://api/v3/jobs/j/results?page=2", "have_next_page": True}, "?page=2"),
        ({"next": "https://api/v3/jobs/j/results?page=2"}, "?page=2"),  # flag missing: go on
        ({"next": "https://api/v3/jobs/j/results?page=2", "have_next_page": False}, None),
        ({"next": None, "have_next_page": True}, None),
        ({}, None),
    ],
)
def test_v3_paging_ends_only_where_documented(paging: dict[str, Any], next_url: str | None) -> None:
    from airflow_provider_captaindata.client.models import V3ResultsPage

    url = V3ResultsPage.model_validate({"results": [], "paging": paging}).next_url
    assert (url and url[url.index("?") :]) == next_url


def test_live_search_to_a_file_leaves_nothing_when_a_page_fails(
    captaindata_emulator: Any, tmp_path: Path
) -> None:
    class DiesOnPage2(CaptainDataHook):
        def iter_live_pages(self, action: str, input: Any, **kwargs: Any) -> Any:
            pages = super().iter_live_pages(action, input, **kwargs)
            yield next(pages)
            raise CaptainDataTransportError("connection dropped", sent=True)

    op = CaptainDataRunActionOperator(
        task_id=TaskInstance.task_id,
        action="linkedin-search-people",
        input={"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=x"},
        output_path=f"file://{tmp_path}/rows.jsonl",
    )
    op.__dict__["hook"] = DiesOnPage2(retry_policy=FAST)
    with pytest.raises(CaptainDataTransportError):
        op.execute(new_context(None))
    assert list(tmp_path.iterdir()) == []  # page 1 was written, then removed with its file


@pytest.mark.parametrize("with_store", [True, False], ids=["task_state_store", "lookup-by-name"])
def test_v3_an_unknown_status_never_allows_a_relaunch(
    captaindata_emulator: Any, hook: CaptainDataHook, workflow_uid: str, with_store: bool
) -> None:
    store = StateStore() if with_store else None
    captaindata_emulator.configure(v3_running_seconds=60)
    run_a = v3_operator(workflow_uid, wait_for_completion=False).execute(new_context(store))
    # The API now answers a status the table does not know, for the run and in its listing.
    job = {**hook.get_workflow_run(run_a).model_dump(), "status": "queued"}
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_a}", body=job, times=None)
    captaindata_emulator.add_fault("GET", f"/v3/workflows/{workflow_uid}/jobs", body=[job], times=None)
    with pytest.raises(CaptainDataRunError, match="unknown run status 'queued'"):
        v3_operator(workflow_uid).wait(new_context(store), run_a)  # the wait fails closed
    with pytest.raises(CaptainDataRunError, match="'queued', which this provider does not know"):
        v3_operator(workflow_uid).execute(new_context(store))  # and the retry does not relaunch
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 1


def test_v4_an_unknown_status_never_allows_a_relaunch(
    captaindata_emulator: Any, hook: CaptainDataHook
) -> None:
    captaindata_emulator.configure(v4_running_seconds=60)
    run_a = v4_operator(wait_for_completion=False).execute(new_context(None))
    run = {**hook.get_action_run(run_a).model_dump(mode="json"), "status": "ON_HOLD"}
    captaindata_emulator.add_fault("GET", "/v4/runs", body=[run], times=None)
    with pytest.raises(CaptainDataRunError, match="'ON_HOLD', which this provider does not know"):
        v4_operator().execute(new_context(None))
    assert len(captaindata_emulator.requests(method="POST", path=V4_LAUNCH)) == 1


# -- paging guards: a loop, a missing paging object, a row count that does not add up -----------

SEARCH = "linkedin-search-people"
SEARCH_INPUT = {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=x"}


def finished_run(captaindata_emulator: Any, workflow_uid: str, rows: int) -> str:
    captaindata_emulator.configure(v3_total_rows=rows, v3_page_size=10)
    run_uid = v3_operator(workflow_uid, fetch_results=False).execute(new_context(None))["run_uid"]
    assert run_uid
    return str(run_uid)


def test_v3_a_results_page_pointing_back_fails_instead_of_looping(
    captaindata_emulator: Any, hook: CaptainDataHook, workflow_uid: str
) -> None:
    run_uid = finished_run(captaindata_emulator, workflow_uid, 25)
    again = f"{captaindata_emulator.info()['v3_url']}/jobs/{run_uid}/results?page=1"
    page = {"results": [{"row_index": 0}], "paging": {"next": again, "have_next_page": True}}
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}/results", body=page, times=None)
    pages = 0
    with pytest.raises(CaptainDataPagingError, match="points to a page already read"):
        for pages, _ in enumerate(hook.iter_workflow_results(run_uid), start=1):
            assert pages < 20, "the paging loops forever"
    assert pages == 2


def test_v3_a_results_page_without_paging_fails_instead_of_stopping(
    captaindata_emulator: Any, workflow_uid: str, tmp_path: Path
) -> None:
    run_uid = finished_run(captaindata_emulator, workflow_uid, 25)
    rows = [{"row_index": i} for i in range(10)]
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}/results", body={"results": rows})
    op = v3_operator(workflow_uid, output_path=f"file://{tmp_path}/rows.jsonl")
    with pytest.raises(CaptainDataPagingError, match="page 1 has no paging object"):
        op.collect(new_context(None), run_uid)
    assert list(tmp_path.iterdir()) == []  # 10 of 25 rows never reach the path


def test_v3_rows_that_do_not_add_up_to_total_row_count_fail(
    captaindata_emulator: Any, workflow_uid: str
) -> None:
    run_uid = finished_run(captaindata_emulator, workflow_uid, 25)
    last = {
        "results": [{"row_index": i} for i in range(3)],
        "paging": {"next": None, "have_next_page": False},
    }
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}/results", body=last)
    with pytest.raises(
        CaptainDataPagingError, match="read 3 rows in 1 pages, but the run reports total_row_count=25"
    ):
        v3_operator(workflow_uid).collect(new_context(None), run_uid)
    assert len(v3_operator(workflow_uid).collect(new_context(None), run_uid)) == 25  # the real pages


def test_v4_live_pages_that_loop_fail(captaindata_emulator: Any, hook: CaptainDataHook) -> None:
    live = f"{captaindata_emulator.info()['v4_url']}/actions/{SEARCH}/run/live"
    for page in (2, 3, 2):  # page 1 -> 2 -> 3 -> 2 again
        captaindata_emulator.add_fault(
            "POST",
            f"/v4/actions/{SEARCH}/run/live",
            body=[{"n": page}],
            headers={"X-Pagination-Next": f"{live}?page={page}"},
        )
    pages = 0
    with pytest.raises(CaptainDataPagingError, match=r"points to a page already read \(.*page=2\)"):
        for pages, _ in enumerate(hook.iter_live_pages(SEARCH, SEARCH_INPUT), start=1):
            assert pages < 20, "the paging loops forever"
    assert pages == 3


@pytest.mark.parametrize("fan_out", [False, True], ids=["one-input", "fan-out"])
def test_v4_a_live_page_naming_itself_next_fails_the_task(
    captaindata_emulator: Any, fan_out: bool, tmp_path: Path
) -> None:
    live = f"{captaindata_emulator.info()['v4_url']}/actions/{SEARCH}/run/live?page=2"
    captaindata_emulator.add_fault(
        "POST",
        f"/v4/actions/{SEARCH}/run/live",
        body=[{"n": 1}],
        headers={"X-Pagination-Next": live},
        times=30,
    )
    op = CaptainDataRunActionOperator(
        task_id=TaskInstance.task_id,
        action=SEARCH,
        **({"inputs": [SEARCH_INPUT]} if fan_out else {"input": SEARCH_INPUT}),
        output_path=f"file://{tmp_path}/rows.jsonl",
    )
    with_hook(op)
    with pytest.raises(CaptainDataPagingError, match="points to a page already read"):
        op.execute(new_context(None))
    assert len(captaindata_emulator.requests(method="POST", path=f"/v4/actions/{SEARCH}/run/live")) == 2
