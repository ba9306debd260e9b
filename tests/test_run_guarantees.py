"""Issue 21's guarantees for live acting actions: records outlive the try, a zombie try stops,
one clock margin for Captain Data's times.

Over real HTTP against the emulator; a task try is ``execute()`` with a context whose task
instance carries the try number (tests/test_actions_writes.py has the DAG-level ones).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_captaindata.exceptions import OUTCOME_UNKNOWN
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from tests.polling import wait_for
from tests.test_actions_writes import (
    MESSAGE,
    RetriedTI,
    StateStore,
    live_posts,
    message_input,
    sends_per_input,
)

WHERE = ["task_state_store", "output_path"]


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = captaindata_emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 40
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    return captaindata_emulator


def try_context(try_number: int, where: str, store: StateStore, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": RetriedTI(try_number), "run_id": "r", **extra}
    if where == "task_state_store":
        context["task_state_store"] = store
    return context


def fan_out(where: str, tmp_path: Any, **kwargs: Any) -> CaptainDataRunActionOperator:
    if where == "output_path":
        kwargs["output_path"] = str(tmp_path / "out.jsonl")
    kwargs.setdefault("inputs", [message_input(i) for i in range(3)])
    return CaptainDataRunActionOperator(task_id="message", action=MESSAGE, **kwargs)


# -- #2: a retry after a try that sent everything (its XCom push failed) sends nothing ----------


@pytest.mark.parametrize("where", WHERE)
def test_fan_out_retry_after_full_success_returns_the_outcome_without_a_call(
    emulator: Any, tmp_path: Any, where: str
) -> None:
    store = StateStore()
    first = fan_out(where, tmp_path).execute(try_context(1, where, store))
    assert sends_per_input(emulator) == {0: 1, 1: 1, 2: 1}
    # Try 1 returned, then Airflow could not record it (the return-value XCom push failed, or
    # the worker died): try 2 finds every input done and sends nothing.
    ti2 = try_context(2, where, store)
    second = fan_out(where, tmp_path).execute(ti2)
    assert sends_per_input(emulator) == {0: 1, 1: 1, 2: 1}
    assert second == first
    assert ti2["ti"].pushed["input_errors"] == []


@pytest.mark.parametrize("where", WHERE)
def test_single_retry_after_success_returns_the_recorded_result(
    emulator: Any, tmp_path: Any, where: str
) -> None:
    store = StateStore()
    kwargs: dict[str, Any] = {"input": message_input(0)}
    if where == "output_path":
        kwargs["output_path"] = str(tmp_path / "one.jsonl")
    op = CaptainDataRunActionOperator(task_id="m", action=MESSAGE, **kwargs)
    first = op.execute(try_context(1, where, store))
    second = CaptainDataRunActionOperator(task_id="m", action=MESSAGE, **kwargs).execute(
        try_context(2, where, store)
    )
    assert len(live_posts(emulator, MESSAGE)) == 1
    assert second == first


def thread_may_execute() -> None:
    """Airflow 2.11's guard against execute() outside a task instance keeps a thread-local set
    up in the main thread only: give this thread its (empty) one, as the main thread has."""
    try:
        from airflow.models.baseoperator import ExecutorSafeguard
    except ImportError:  # Airflow 3
        return
    sentinel = ExecutorSafeguard._sentinel
    if not hasattr(sentinel, "callers"):
        sentinel.callers = {}


# -- suspected: a zombie try and its retry overlapping ---------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_zombie_try_stops_once_its_retry_claims_the_records(emulator: Any, tmp_path: Any, where: str) -> None:
    """Try 1 lives on (a zombie: its worker lost its heartbeat) while try 2 runs the same
    fan-out: no input is sent by both."""
    from airflow_provider_captaindata.checkpoint import SupersededTryError

    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", delay=0.3, times=None)
    store = StateStore()
    inputs = [message_input(i) for i in range(12)]
    zombie_error: list[BaseException] = []

    def zombie() -> None:
        thread_may_execute()
        try:
            fan_out(where, tmp_path, inputs=inputs, max_concurrency=1).execute(try_context(1, where, store))
        except BaseException as exc:
            zombie_error.append(exc)

    thread = threading.Thread(target=zombie)
    thread.start()
    wait_for(lambda: len(live_posts(emulator, MESSAGE)) >= 2 or zombie_error, timeout=30)
    assert not zombie_error or len(live_posts(emulator, MESSAGE)) >= 2, zombie_error
    retry = fan_out(where, tmp_path, inputs=inputs, max_concurrency=1, on_input_error="continue")
    ti2 = try_context(2, where, store)
    retry.execute(ti2)
    thread.join(timeout=60)
    sends = sends_per_input(emulator)
    assert max(sends.values()) == 1, sends
    # Every input went once, but one the zombie held in flight as try 2 began (reported
    # unknown by try 2, never sent again).
    unknown = {e["input_index"] for e in ti2["ti"].pushed["input_errors"]}
    assert all(e["error_label"] == OUTCOME_UNKNOWN for e in ti2["ti"].pushed["input_errors"])
    assert set(sends) | unknown == set(range(12)) and len(unknown) <= 1
    assert zombie_error and isinstance(zombie_error[0], SupersededTryError)


# -- #3: one clock margin for Captain Data's times -------------------------------------------------


@pytest.mark.parametrize("behind", [timedelta(seconds=3), timedelta(minutes=9)])
def test_retry_without_records_sends_nothing_when_captain_data_clock_is_behind(
    emulator: Any, behind: timedelta
) -> None:
    """No record store (2.11-3.2 without output_path): try 1 sent, try 2 must see that, even if
    Captain Data's clock says the sends came before the DAG run started."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    inputs = [message_input(i) for i in range(2)]
    op = CaptainDataRunActionOperator(task_id="message", action=MESSAGE, inputs=inputs)
    op.execute({"ti": RetriedTI(1), "run_id": "r"})

    class DagRun:  # on Airflow's clock, the DAG run started after Captain Data's created_at
        start_date = datetime.now(UTC) + behind

    with pytest.raises(AirflowFailException, match=OUTCOME_UNKNOWN):
        op.execute({"ti": RetriedTI(2), "run_id": "r", "dag_run": DagRun()})
    assert sends_per_input(emulator) == {0: 1, 1: 1}


# -- #10: parameters checked against the catalog before any call -----------------------------------


def test_parameter_typo_is_refused_before_any_call_naming_the_right_one(emulator: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_captaindata.exceptions import CaptainDataConfigError

    with pytest.raises(CaptainDataConfigError, match=r"parameters.*'mesage'.*did you mean 'message'"):
        CaptainDataRunActionOperator(
            task_id="m", action=MESSAGE, input=message_input(0), parameters={"mesage": "hi"}
        )
    # Rendered at run time (a template): refused in execute(), before any request.
    op = CaptainDataRunActionOperator(
        task_id="m",
        action=MESSAGE,
        inputs=[message_input(i) for i in range(3)],
        parameters="{{ params.p }}",
    )
    op.parameters = '{"message": 5}'  # what the template rendered to
    with pytest.raises(AirflowFailException, match=r"parameters.*'message' must be"):
        op.execute({"ti": RetriedTI(1), "run_id": "r"})
    assert emulator.requests() == []


# -- #4: two mapped instances never write one object ---------------------------------------------


@pytest.mark.usefixtures("airflow_db")
def test_mapped_instances_with_one_rendered_output_path_each_write_their_own_object(
    emulator: Any, tmp_path: Any
) -> None:
    from tests.airflow_helpers import make_dag, run_dag, task_states

    with make_dag("mapped_same_output_path") as dag:
        CaptainDataRunActionOperator.partial(
            task_id="extract",
            action="linkedin-extract-people",
            output_path=str(tmp_path / "{{ run_id | replace(':', '_') }}.jsonl"),
        ).expand(input=[message_input(i) for i in range(3)])
    dag_run = run_dag(dag)
    assert task_states(dag_run) == {"extract": "success"}
    # One pull per map index (Airflow 3.1's pull of every index fails on its own select).
    instances = sorted(dag_run.get_task_instances(), key=lambda ti: ti.map_index)
    summaries = [ti.xcom_pull(task_ids="extract", map_indexes=ti.map_index) for ti in instances]
    paths = [s["path"] for s in summaries]
    assert len(set(paths)) == 3 and all(f".map-{i}.jsonl" in p for i, p in enumerate(paths))
    files = sorted(p for p in tmp_path.iterdir() if p.suffix == ".jsonl")
    assert len(files) == 3
    rows = [line for f in files for line in f.read_text().splitlines()]
    assert len(rows) == sum(s["rows"] for s in summaries) == 3


# -- suspected: the default deployment differing across workers ------------------------------------


@pytest.mark.airflow3
def test_default_deployment_is_the_same_on_workers_reaching_different_api_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers of one deployment, each configured with its own API server (no [api]
    base_url): a retry on the second must compute the first's launch identity."""
    from airflow_provider_captaindata.launch_identity import airflow_deployment

    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    seen = set()
    for server in ("http://api-1.internal:8080/execution/", "http://api-2.internal:8080/execution/"):
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", server)
        seen.add(airflow_deployment())
    assert len(seen) == 1, seen


# -- suspected: retry_on_failure on a v3 paused run ------------------------------------------------


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("stoppable", [True, False], ids=["stopped", "stop-refused"])
def test_retry_on_failure_stops_a_paused_run_before_retrying_it(
    captaindata_emulator: Any, stoppable: bool
) -> None:
    """A paused run resumes when its integration is fixed: retried beside it, every input would
    run twice. It is stopped first; if it cannot be, it is not retried."""
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
    from tests.airflow_helpers import run_dag, task_states
    from tests.test_workflows import launch_dag

    emulator = captaindata_emulator
    emulator.configure(v3_pending_seconds=0.2, v3_running_seconds=0.5)
    workflow_uid = next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)
    emulator.force_outcome(workflow_uid, "paused", error_message="the integration needs attention", times=1)
    if not stoppable:
        emulator.add_fault("POST", "/v3/jobs/*/cancel", status=403, times=None)

    dag = launch_dag(
        f"v3_paused_retry_{stoppable}", workflow_uid, retry_on_failure=1, paused_grace_period=0.5
    )
    dag_run = run_dag(dag)
    cancels = emulator.requests(method="POST", path="/v3/jobs/*/cancel")
    retries = emulator.requests(method="POST", path="/v3/jobs/*/retry")
    assert len(cancels) == 1
    if stoppable:
        assert len(retries) == 1 and cancels[0]["time"] <= retries[0]["time"]
        assert cancels[0]["path"].split("/")[3] == retries[0]["path"].split("/")[3]  # the paused one
        assert task_states(dag_run) == {"launch": "success"}
    else:
        assert retries == []
        assert task_states(dag_run) == {"launch": "failed"}


# -- suspected: asyncio.wait_for on Python 3.11 swallowing a cancellation --------------------------


def test_trigger_cancelled_as_its_status_read_completes_stops(captaindata_emulator: Any) -> None:
    """Python 3.11's asyncio.wait_for returns the inner result when the cancellation arrives as
    the inner call completes: the trigger (cancelled by the triggerer, e.g. handed to another
    one) would go on polling. The status read is real (the emulator); only its return is held
    so that the cancellation can meet it."""
    import asyncio

    from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger
    from tests.test_trigger import launch

    captaindata_emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=60)
    workflow = next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)
    run_uid = launch(workflow)

    async def scenario() -> bool:
        reached = asyncio.Event()
        release = asyncio.get_running_loop().create_future()

        class HeldTrigger(CaptainDataRunTrigger):
            def _hook(self) -> Any:
                real = super()._hook()

                class Held:
                    async def get_run(self, api_version: str, uid: str) -> Any:
                        snapshot = await real.get_run(api_version, uid)
                        reached.set()
                        await release
                        return snapshot

                return Held()

        # With a deadline, the read is bounded by it (no deadline: no timeout, nothing to swallow).
        trigger = HeldTrigger(run_uid=run_uid, poll_interval=0.05, timeout_at=time.time() + 600)

        async def consume() -> None:
            async for _ in trigger.run():
                return

        task = asyncio.create_task(consume())
        await asyncio.wait_for(reached.wait(), 30)
        release.set_result(None)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:  # the cancellation was lost: the trigger polls on
            task.cancel()
            await asyncio.wait({task}, timeout=2)
            return False
        return task.cancelled()

    assert asyncio.run(scenario())


def test_collect_operator_mapped_instance_writes_its_own_object(
    captaindata_emulator: Any, tmp_path: Any
) -> None:
    from airflow_provider_captaindata.operators.collect import CaptainDataCollectRunOperator
    from tests.polling import wait_for
    from tests.test_trigger import launch

    captaindata_emulator.configure(v3_pending_seconds=0.05, v3_running_seconds=0.1)
    workflow = next(w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)
    run_uid = launch(workflow)
    wait_for(lambda: CaptainDataHook().get_workflow_run(run_uid).status == "finished")
    ti = RetriedTI(1)
    ti.map_index = 2
    op = CaptainDataCollectRunOperator(
        task_id="collect", run_uid=run_uid, output_path=str(tmp_path / "rows.jsonl")
    )
    summary = op.execute({"ti": ti, "run_id": "r"})
    assert summary["path"].endswith("rows.map-2.jsonl") and (tmp_path / "rows.map-2.jsonl").exists()
