"""Live actions with effects (a LinkedIn message, a connection request): never sent twice.

Over real HTTP against the emulator, with its faults "after the API acted": the request is
processed (the message goes out, a LIVE run is listed), then the answer is lost or broken.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC
from typing import Any

import pytest

from airflow_provider_captaindata.client.catalog import (
    action_names,
    catalog_metadata,
    get_action,
    has_effects,
)
from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import OUTCOME_UNKNOWN, CaptainDataOutcomeUnknown
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

MESSAGE = "linkedin-message-profile"
EXTRACT = "linkedin-extract-people"
FAST = RetryPolicy(
    attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=0.5, launch_lookup_delay=0
)


def message_input(i: int) -> dict[str, Any]:
    return {"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}"}


def live_posts(emulator: Any, action: str) -> list[dict[str, Any]]:
    return emulator.requests(method="POST", path=f"/v4/actions/{action}/run/live*")


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    conn = captaindata_emulator.connection_json()
    conn["extra"]["rate_limit_per_second"] = 40
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    return captaindata_emulator


def test_catalog_classifies_every_action() -> None:
    writes = {n for n in action_names() if has_effects(n)}
    assert {MESSAGE, "linkedin-connect-profile", "linkedin-comment-post", "linkedin-invite-event"} <= writes
    assert {"linkedin-visit-profile", "salesnavigator-inmail-profile", "linkedin-like-post"} <= writes
    reads = set(action_names()) - writes
    assert EXTRACT in reads and "linkedin-search-people" in reads and "linkedin-me" in reads
    assert all(n.split("-")[1] in ("extract", "search", "me", "peopleid") for n in reads)
    assert len(writes) == 17 and len(reads) == 54
    assert "only read" in catalog_metadata()["effects_rule"]
    assert has_effects("some-new-action")  # unknown: acting, the safe side
    spec = get_action(MESSAGE)
    assert spec is not None and spec.effects


AMBIGUOUS = {
    "503": {"status": 503, "after": True},
    "dropped": {"drop": True, "after": True},
    "truncated": {"malformed": True, "after": True},
    "read-timeout": {"delay": 1.5},  # served, answered past the 0.5 s read timeout
}


@pytest.mark.parametrize("fault", list(AMBIGUOUS))
def test_write_is_not_resent_after_an_ambiguous_failure(emulator: Any, fault: str) -> None:
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", **AMBIGUOUS[fault])
    hook = CaptainDataHook(retry_policy=FAST)
    with pytest.raises(CaptainDataOutcomeUnknown, match=OUTCOME_UNKNOWN):
        hook.run_action_live(MESSAGE, message_input(0))
    assert len(live_posts(emulator, MESSAGE)) == 1
    # The API did act: the message is listed as a LIVE run.
    (run,) = hook.list_action_runs(action_name=MESSAGE, execution_mode="LIVE")
    assert run.status == "SUCCEEDED"


@pytest.mark.parametrize("fault", list(AMBIGUOUS))
def test_read_is_resent_after_an_ambiguous_failure(emulator: Any, fault: str) -> None:
    emulator.add_fault("POST", f"/v4/actions/{EXTRACT}/run/live", **AMBIGUOUS[fault])
    answer = CaptainDataHook(retry_policy=FAST).run_action_live(EXTRACT, message_input(0))
    assert answer and len(live_posts(emulator, EXTRACT)) == 2


@pytest.mark.parametrize("fault", [{"status": 429, "retry_after": 0}, {"status": 503}])
def test_write_refused_before_acting_is_retried_or_raised(emulator: Any, fault: dict[str, Any]) -> None:
    """A 429 was refused before any work: sent again. A 503 without ``after``... the client cannot
    tell it from one after the API acted, so it is outcome unknown either way."""
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", **fault)
    hook = CaptainDataHook(retry_policy=FAST)
    if fault["status"] == 429:
        assert hook.run_action_live(MESSAGE, message_input(0))
        assert len(live_posts(emulator, MESSAGE)) == 2
    else:
        with pytest.raises(CaptainDataOutcomeUnknown):
            hook.run_action_live(MESSAGE, message_input(0))
        assert len(live_posts(emulator, MESSAGE)) == 1


def test_single_write_outcome_unknown_fails_without_task_retries(emulator: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", drop=True, after=True)
    op = CaptainDataRunActionOperator(task_id="message", action=MESSAGE, input=message_input(0))
    with pytest.raises(AirflowFailException, match=OUTCOME_UNKNOWN):
        op.execute({"ti": _XComSink(), "run_id": "r"})
    assert len(live_posts(emulator, MESSAGE)) == 1


class _XComSink:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_fan_out_write_reports_outcome_unknown_for_that_input_only(emulator: Any) -> None:
    emulator.add_fault(
        "POST", f"/v4/actions/{MESSAGE}/run/live", status=502, after=True, match_body="person-00001"
    )
    op = CaptainDataRunActionOperator(
        task_id="message",
        action=MESSAGE,
        inputs=[message_input(i) for i in range(3)],
        on_input_error="continue",
    )
    ti = _XComSink()
    rows = op.execute({"ti": ti, "run_id": "r"})
    assert sorted(r["custom_data"]["airflow_input_index"] for r in rows) == [0, 2]
    (error,) = ti.pushed["input_errors"]
    assert (error["input_index"], error["error_label"], error["status_code"]) == (1, OUTCOME_UNKNOWN, 502)
    bodies = [json.dumps(r["body"]) for r in live_posts(emulator, MESSAGE)]
    assert len(bodies) == 3 and sum("person-00001" in b for b in bodies) == 1


# -- task retries: only the inputs with no recorded outcome are sent again ----------------------


def sends_per_input(emulator: Any, action: str = MESSAGE) -> dict[int, int]:
    counts: dict[int, int] = {}
    for call in live_posts(emulator, action):
        index = call["body"]["input"]["custom_data"]["airflow_input_index"]
        counts[index] = counts.get(index, 0) + 1
    return counts


def fan_out_dag(dag_id: str, **kwargs: Any) -> Any:
    from datetime import timedelta

    from tests.airflow_helpers import make_dag

    with make_dag(dag_id) as dag:
        CaptainDataRunActionOperator(
            task_id="message",
            action=MESSAGE,
            inputs=[message_input(i) for i in range(3)],
            retries=1,
            retry_delay=timedelta(0),
            **kwargs,
        )
    return dag


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("where", ["default", "output_path"])
def test_task_retry_sends_only_inputs_without_an_outcome(emulator: Any, tmp_path: Any, where: str) -> None:
    """A permanent 424 on input 2 of 3, one task retry: inputs 0 and 1 went out once each."""
    from tests.airflow_helpers import AIRFLOW_3_3, run_dag, task_states

    emulator.add_fault(
        "POST", f"/v4/actions/{MESSAGE}/run/live", status=424, times=None, match_body="person-00002"
    )
    kwargs = {"output_path": str(tmp_path / "out.jsonl")} if where == "output_path" else {}
    dag_run = run_dag(fan_out_dag(f"writes_retry_{where}", **kwargs))
    assert task_states(dag_run) == {"message": "failed"}
    sends = sends_per_input(emulator)
    assert sends[0] == 1 and sends[1] == 1
    recorded = AIRFLOW_3_3 or where == "output_path"
    # With a record, the retry sends input 2 again; without one it sends nothing (it cannot
    # tell which inputs the first try sent).
    assert sends[2] == (2 if recorded else 1)


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("where", ["default", "output_path"])
def test_task_retry_reuses_recorded_rows(emulator: Any, tmp_path: Any, where: str) -> None:
    """A 424 on input 1 once: the retry sends input 1 only and returns all three inputs' rows."""
    from tests.airflow_helpers import AIRFLOW_3_3, run_dag, task_states, xcom

    if not AIRFLOW_3_3 and where == "default":
        pytest.skip("no checkpoint store before Airflow 3.3 without output_path")
    emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", status=424, match_body="person-00001")
    out = tmp_path / "out.jsonl"
    kwargs = {"output_path": str(out)} if where == "output_path" else {}
    dag_run = run_dag(fan_out_dag(f"writes_resume_{where}", **kwargs))
    assert task_states(dag_run) == {"message": "success"}
    assert sends_per_input(emulator) == {0: 1, 1: 2, 2: 1}
    if where == "output_path":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        # Kept after the success (a retry of a try that failed after execute() needs them);
        # on 3.3 they are in the task state store instead.
        assert any(p.name.endswith(".checkpoint") for p in tmp_path.iterdir()) == (not AIRFLOW_3_3)
    else:
        rows = xcom(dag_run, "message")
    assert [r["custom_data"]["airflow_input_index"] for r in rows] == [0, 1, 2]


# -- the reorder buffer is bounded ---------------------------------------------------------------


def test_slow_head_input_holds_at_most_a_window_of_rows(emulator: Any) -> None:
    import asyncio

    from airflow_provider_captaindata.operators.fanout import LiveFanOut

    emulator.add_fault("POST", f"/v4/actions/{EXTRACT}/run/live", delay=1.0, match_body="person-00000")
    inputs = [message_input(i) for i in range(80)]
    op = CaptainDataRunActionOperator(task_id="extract", action=EXTRACT, inputs=inputs, max_concurrency=3)
    fan_out = LiveFanOut(op.fanout_spec(), inputs)
    assert fan_out.window == 256  # by default; never under 4 per worker
    fan_out.window = 12  # a small window, to see it hold with 80 inputs
    asyncio.run(fan_out.run())
    assert 1 < fan_out.most_held <= 12
    rows = fan_out.sink.finish()
    assert [r["custom_data"]["airflow_input_index"] for r in rows] == list(range(80))


def test_fan_out_closes_its_http_client(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The loop's shutdown would close a forgotten session too: check it is closed when the
    # fan-out itself returns, while its loop still runs.
    from airflow_provider_captaindata.client.transport_async import AsyncTransport
    from airflow_provider_captaindata.operators.fanout import LiveFanOut

    pools: list[Any] = []
    new_pool = AsyncTransport._new_pool

    def recording_new_pool(self: AsyncTransport, *args: Any) -> Any:
        pools.append(new_pool(self, *args))
        return pools[-1]

    monkeypatch.setattr(AsyncTransport, "_new_pool", recording_new_pool)
    op = CaptainDataRunActionOperator(
        task_id="extract", action=EXTRACT, inputs=[message_input(i) for i in range(2)]
    )

    async def fan_out() -> list[bool]:
        await LiveFanOut(op.fanout_spec(), [message_input(i) for i in range(2)]).run()
        return [pool.session.closed for pool in pools]

    assert asyncio.run(fan_out()) == [True]


def test_input_errors_xcom_is_capped_by_bytes() -> None:
    from airflow_provider_captaindata.operators.fanout import errors_for_xcom

    errors = [{"input_index": i, "message": "x" * 1000} for i in range(10)]
    kept, left_out = errors_for_xcom(errors, max_bytes=3500)
    assert [e["input_index"] for e in kept] == [0, 1, 2] and left_out == 7
    assert len(json.dumps(kept)) <= 3500


# -- a worker that died with a call in flight ------------------------------------------------------


class StateStore:
    """Like Airflow 3.3's task_state_store accessor: JSON values, None refused, keys deletable."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class RetriedTI(_XComSink):
    dag_id, task_id, map_index = "writes", "message", -1

    def __init__(self, try_number: int) -> None:
        super().__init__()
        self.try_number = try_number


def crashed_try(op: CaptainDataRunActionOperator, store: StateStore | None, crash_on: str) -> None:
    """Try 1 dies (like a killed worker) as the call of the input containing ``crash_on`` is sent."""
    from airflow_provider_captaindata.client.api import CaptainDataClient
    from airflow_provider_captaindata.client.api_async import CaptainDataAsyncClient

    class WorkerDied(BaseException):
        pass

    def die_on(original: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            if crash_on in json.dumps(kwargs.get("json")):
                raise WorkerDied
            return original(self, *args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CaptainDataClient, "_call", die_on(CaptainDataClient._call))
        patch.setattr(CaptainDataAsyncClient, "_acall", die_on(CaptainDataAsyncClient._acall))
        context: dict[str, Any] = {"ti": RetriedTI(1), "run_id": "r"}
        if store is not None:
            context["task_state_store"] = store
        with pytest.raises(WorkerDied):
            op.execute(context)


def test_retry_after_a_crash_mid_call_does_not_send_that_input_again(emulator: Any) -> None:
    inputs = [message_input(i) for i in range(3)]
    store = StateStore()
    kwargs: dict[str, Any] = {"task_id": "message", "action": MESSAGE, "inputs": inputs, "max_concurrency": 1}
    crashed_try(CaptainDataRunActionOperator(**kwargs), store, "person-00001")
    assert sends_per_input(emulator) == {0: 1}
    ti = RetriedTI(2)
    op = CaptainDataRunActionOperator(**kwargs, on_input_error="continue")
    rows = op.execute({"ti": ti, "run_id": "r", "task_state_store": store})
    # Input 0 answered in try 1 (its rows reused), input 1 was in flight when the worker died
    # (never sent again), input 2 was never sent before.
    assert sends_per_input(emulator) == {0: 1, 2: 1}
    (error,) = ti.pushed["input_errors"]
    assert (error["input_index"], error["error_label"]) == (1, OUTCOME_UNKNOWN)
    assert [r["custom_data"]["airflow_input_index"] for r in rows] == [0, 2]
    # Kept after the success (Airflow 3.3's clear_on_success removes them once it is recorded).
    records = [
        json.loads(v)
        for k, v in store.data.items()
        if k.startswith("captaindata_live_input/") and not k.endswith("/owner")
    ]
    assert sorted(r["state"] for r in records) == ["done", "done", "sending"]


def test_single_write_retry_after_a_crash_mid_call_fails_without_sending(emulator: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    store = StateStore()
    crashed_try(
        CaptainDataRunActionOperator(task_id="m", action=MESSAGE, input=message_input(0)), store, "person-0"
    )
    op = CaptainDataRunActionOperator(task_id="m", action=MESSAGE, input=message_input(0))
    with pytest.raises(AirflowFailException, match=OUTCOME_UNKNOWN):
        op.execute({"ti": RetriedTI(2), "run_id": "r", "task_state_store": store})
    assert live_posts(emulator, MESSAGE) == []
    # Another input is another call: sent.
    other = CaptainDataRunActionOperator(task_id="m", action=MESSAGE, input=message_input(7))
    assert other.execute({"ti": RetriedTI(2), "run_id": "r", "task_state_store": store})
    assert len(live_posts(emulator, MESSAGE)) == 1


def test_records_beside_an_s3_output_path_survive_a_crash(emulator: Any, s3_server: Any) -> None:
    """No task_state_store (Airflow before 3.3): the records live beside output_path, on S3."""
    import uuid

    from airflow.providers.common.compat.sdk import ObjectStoragePath

    prefix = f"writes-{uuid.uuid4().hex[:8]}"
    output_path = s3_server.uri(f"{prefix}/out.jsonl")
    inputs = [message_input(i) for i in range(3)]
    kwargs: dict[str, Any] = {"task_id": "message", "action": MESSAGE, "inputs": inputs, "max_concurrency": 1}
    kwargs["output_path"] = output_path
    crashed_try(CaptainDataRunActionOperator(**kwargs), None, "person-00001")
    folder = ObjectStoragePath(s3_server.uri(prefix))
    assert any(p.name.endswith(".checkpoint") for p in folder.iterdir())
    ti = RetriedTI(2)
    summary = CaptainDataRunActionOperator(**kwargs, on_input_error="continue").execute(
        {"ti": ti, "run_id": "r"}
    )
    assert sends_per_input(emulator) == {0: 1, 2: 1}
    assert summary["rows"] == 2 and summary["failed"] == 1
    assert ti.pushed["input_errors"][0]["error_label"] == OUTCOME_UNKNOWN
    lines = ObjectStoragePath(output_path).read_text().splitlines()
    assert [json.loads(line)["custom_data"]["airflow_input_index"] for line in lines] == [0, 2]
    assert any(p.name.endswith(".checkpoint") for p in folder.iterdir())  # kept (see checkpoint.py)


def test_retry_with_no_record_sends_nothing_if_the_action_ran(emulator: Any) -> None:
    """Airflow 2.11 to 3.2 without output_path: the live runs listed since the DAG run started decide."""
    from datetime import datetime, timedelta

    from airflow.providers.common.compat.sdk import AirflowFailException

    inputs = [message_input(i) for i in range(2)]
    op = CaptainDataRunActionOperator(task_id="message", action=MESSAGE, inputs=inputs)

    class DagRun:
        start_date = datetime.now(UTC) - timedelta(seconds=5)

    # Try 2 of a task whose try 1 never reached the API: the action has no live run, it runs.
    assert len(op.execute({"ti": RetriedTI(2), "run_id": "r", "dag_run": DagRun()})) == 2
    assert sends_per_input(emulator) == {0: 1, 1: 1}
    # Try 3: the action ran since the DAG run started, and which inputs went is unknown.
    with pytest.raises(AirflowFailException, match=OUTCOME_UNKNOWN):
        op.execute({"ti": RetriedTI(3), "run_id": "r", "dag_run": DagRun()})
    assert sends_per_input(emulator) == {0: 1, 1: 1}
