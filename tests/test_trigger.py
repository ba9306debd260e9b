"""CaptainDataRunTrigger in its own async loop, and the operators' fail-closed completion."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.client.versions import get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataConfigError,
    CaptainDataError,
    CaptainDataRunError,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor
from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

UID = "7f3c2a10-0d5e-4c1b-9a57-2f1e0b6c9d44"


def recreate(trigger: CaptainDataRunTrigger) -> CaptainDataRunTrigger:
    classpath, kwargs = trigger.serialize()
    json.dumps(kwargs)  # JSON primitives only
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


async def first_event(trigger: CaptainDataRunTrigger, timeout: float = 30.0) -> dict[str, Any]:
    async def take() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(take(), timeout)


def launch(workflow_uid: str, name: str = "t") -> str:
    hook = CaptainDataHook()
    step = hook.get_workflow_details(workflow_uid).steps[0].step_uid
    inputs = [{"linkedin_profile_url": "https://www.linkedin.com/in/a"}]
    return hook.launch_workflow(
        workflow_uid, inputs=inputs, steps=[{"step_uid": step}], job_name=name
    ).job_uid


@pytest.fixture
def workflow_uid(captaindata_emulator: Any) -> str:
    captaindata_emulator.configure(v3_pending_seconds=0.3, v3_running_seconds=1.5)
    return next(w for w in CaptainDataHook().list_workflows() if len(w.steps) == 1).uid


@pytest.fixture
def run_uid(workflow_uid: str) -> str:
    return launch(workflow_uid)


def test_serialization_round_trip_has_no_secret(captaindata_emulator: Any) -> None:
    trigger = CaptainDataRunTrigger(
        run_uid="r1", api_version="v4", poll_interval=2, timeout_at=time.time() + 60
    )
    again = recreate(trigger)
    assert again.serialize() == trigger.serialize()
    assert captaindata_emulator.api_key not in json.dumps(trigger.serialize())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"run_uid": ""}, "run_uid"),
        ({"api_version": "v5"}, "api_version"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"timeout_at": "tomorrow"}, "timeout_at"),
        ({"captaindata_conn_id": object()}, "captaindata_conn_id"),
        ({"stop_on_kill": "false"}, "stop_on_kill"),
        ({"paused_since": "yesterday"}, "paused_since"),
    ],
)
def test_bad_kwargs_fail_at_construction(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=name):
        CaptainDataRunTrigger(**{"run_uid": "r1", **kwargs})


def test_trigger_recreated_mid_run_finishes_the_same_run(run_uid: str, captaindata_emulator: Any) -> None:
    trigger = CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.2)

    async def scenario() -> dict[str, Any]:
        with pytest.raises(asyncio.TimeoutError):
            await first_event(trigger, timeout=0.5)  # a triggerer restart mid-run
        return await first_event(recreate(trigger))

    event = asyncio.run(scenario())
    assert event["status"] == "success" and event["run_uid"] == run_uid and event["run_status"] == "finished"
    # The trigger only reads: the one POST is the launch made by the fixture.
    assert len(captaindata_emulator.requests(method="POST")) == 1


def test_transient_poll_errors_do_not_end_the_wait(run_uid: str, captaindata_emulator: Any) -> None:
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}", status=503, times=8)
    event = asyncio.run(first_event(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.2)))
    assert event["status"] == "success"


def test_timeout_event_before_the_run_ends(run_uid: str, captaindata_emulator: Any) -> None:
    captaindata_emulator.configure(v3_running_seconds=60)
    trigger = CaptainDataRunTrigger(run_uid=run_uid, poll_interval=5, timeout_at=time.time() + 0.5)
    started = time.monotonic()
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "timeout" and event["deadline"] == "timeout"
    assert time.monotonic() - started < 3  # never sleeps past its deadline


def test_unknown_run_is_an_error_event(captaindata_emulator: Any) -> None:
    event = asyncio.run(first_event(CaptainDataRunTrigger(run_uid=UID, poll_interval=0.2)))
    assert event["status"] == "error" and "404" in event["message"]


def test_on_kill_stops_the_run(run_uid: str) -> None:
    asyncio.run(CaptainDataRunTrigger(run_uid=run_uid).on_kill())
    assert CaptainDataHook().get_workflow_run(run_uid).status == "stopped"


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "weird", "run_uid": "r"}, {"status": "success"}, "success"],
)
def test_execute_complete_fails_closed(event: Any) -> None:
    op = CaptainDataLaunchWorkflowOperator(task_id="t", workflow_uid=UID, inputs=[{"a": 1}])
    with pytest.raises(CaptainDataError, match="failing closed"):
        op.execute_complete({}, event)
    sensor = CaptainDataRunSensor(task_id="s", run_uid="r")
    with pytest.raises(CaptainDataError, match="failing closed"):
        sensor.execute_complete({}, event)


@pytest.mark.parametrize("status", ["error", "cancelled"])
def test_failure_events_raise_with_the_message(status: str) -> None:
    op = CaptainDataLaunchWorkflowOperator(task_id="t", workflow_uid=UID, inputs=[{"a": 1}])
    event = {"status": status, "run_uid": "r", "run_status": "warning", "message": "bad cookie"}
    with pytest.raises(CaptainDataRunError, match="bad cookie"):
        op.execute_complete({}, event)


# -- rule 2: deadlines bound the wait, status reads included ---------------------------------


def test_slow_status_read_does_not_push_the_execution_deadline_back(
    run_uid: str, captaindata_emulator: Any
) -> None:
    # One read can take minutes (read timeout, retries, Retry-After): the deadline must still
    # hand the task back in time, or Airflow 2 fails it at start + execution_timeout without
    # calling execute_complete, and the run is never stopped.
    captaindata_emulator.configure(v3_running_seconds=60)
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}", delay=6, times=None)
    trigger = CaptainDataRunTrigger(run_uid=run_uid, poll_interval=5, execution_deadline_at=time.time() + 1)
    started = time.monotonic()
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "timeout" and event["deadline"] == "execution_timeout"
    assert time.monotonic() - started < 3


def test_deadline_already_past_at_start_is_a_timeout_at_once(run_uid: str, captaindata_emulator: Any) -> None:
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}", delay=6, times=None)
    trigger = recreate(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=5, timeout_at=time.time() - 1))
    started = time.monotonic()
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "timeout" and event["deadline"] == "timeout" and event["run_uid"] == run_uid
    assert time.monotonic() - started < 1


def test_execution_deadline_event_stops_the_run(run_uid: str, captaindata_emulator: Any) -> None:
    captaindata_emulator.configure(v3_running_seconds=60)
    trigger = CaptainDataRunTrigger(
        run_uid=run_uid, poll_interval=0.2, execution_deadline_at=time.time() + 0.5
    )
    event = asyncio.run(first_event(trigger))
    op = CaptainDataLaunchWorkflowOperator(task_id="t", workflow_uid=UID, inputs=[{"a": 1}])
    with pytest.raises(CaptainDataRunError, match="execution_timeout reached; the run was stopped"):
        op.execute_complete({}, event)
    assert CaptainDataHook().get_workflow_run(run_uid).status == "stopped"


class FakeTI:
    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.start_date = datetime.now(UTC)
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_operator_defers_without_framework_timeout_and_hands_over_the_pause(
    workflow_uid: str, captaindata_emulator: Any
) -> None:
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import TaskDeferred

    captaindata_emulator.configure(v3_running_seconds=0.2)
    captaindata_emulator.force_outcome(workflow_uid, "paused", error_message="cookie expired")
    paused = launch(workflow_uid)
    while CaptainDataHook().get_workflow_run(paused).status != "paused":
        time.sleep(0.1)
    op = CaptainDataLaunchWorkflowOperator(
        task_id="t",
        workflow_uid=workflow_uid,
        inputs=[{"a": 1}],
        deferrable=True,
        timeout=3600,
        execution_timeout=timedelta(hours=2),
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.wait({"ti": FakeTI()}, paused)
    assert deferred.value.timeout is None  # Airflow's own timeout would skip execute_complete
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["execution_deadline_at"] == pytest.approx(before + 7200 - 60, abs=5)
    assert kwargs["timeout_at"] == pytest.approx(before + 3600, abs=5)
    # The grace period counts from the pause the worker saw, not from the trigger's start.
    assert kwargs["paused_since"] == pytest.approx(before, abs=5)


# -- v3 paused: a grace period; a re-created trigger starts from the kwargs of the deferral -----


def test_a_recreated_trigger_counts_the_pause_from_its_stored_kwargs(
    workflow_uid: str, captaindata_emulator: Any
) -> None:
    # Airflow stores a trigger's kwargs once, when the task defers; a triggerer restart
    # re-creates the trigger from that row. Nothing the running trigger learns is written back.
    captaindata_emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=0.2)
    captaindata_emulator.force_outcome(workflow_uid, "paused", error_message="cookie expired")
    uid = launch(workflow_uid)
    trigger = CaptainDataRunTrigger(run_uid=uid, poll_interval=0.2, paused_grace_period=2)
    stored = trigger.serialize()

    async def scenario() -> tuple[dict[str, Any], float]:
        with pytest.raises(asyncio.TimeoutError):
            await first_event(trigger, timeout=1.5)  # saw the pause, then a triggerer restart
        assert trigger.serialize() == stored  # the row Airflow re-creates from is unchanged
        classpath, kwargs = stored
        module, _, name = classpath.rpartition(".")
        again = getattr(importlib.import_module(module), name)(**kwargs)
        started = time.monotonic()
        return await first_event(again), time.monotonic() - started

    event, waited = asyncio.run(scenario())
    assert event["status"] == "error" and event["run_status"] == "paused"
    assert "needs attention" in event["message"] and "cookie expired" in event["message"]
    assert waited >= 1.9  # a whole grace period from the restart, as the docs say


def test_pause_seen_before_deferring_counts(workflow_uid: str, captaindata_emulator: Any) -> None:
    captaindata_emulator.configure(v3_pending_seconds=0.1, v3_running_seconds=0.1)
    captaindata_emulator.force_outcome(workflow_uid, "paused")
    uid = launch(workflow_uid)
    time.sleep(0.5)
    trigger = CaptainDataRunTrigger(
        run_uid=uid, poll_interval=5, paused_grace_period=60, paused_since=time.time() - 61
    )
    started = time.monotonic()
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and event["run_status"] == "paused"
    assert time.monotonic() - started < 2


# -- rule 4: only a user's kill stops the run -------------------------------------------------


def test_cleanup_and_kill_without_stop_on_kill_leave_the_run_alone(
    run_uid: str, captaindata_emulator: Any
) -> None:
    async def scenario() -> None:
        await CaptainDataRunTrigger(run_uid=run_uid).cleanup()  # every exit, restarts included
        await CaptainDataRunTrigger(run_uid=run_uid, stop_on_kill=False).on_kill()  # the sensor's

    asyncio.run(scenario())
    assert len(captaindata_emulator.requests(method="POST")) == 1  # the launch only
    assert CaptainDataHook().get_workflow_run(run_uid).status != "stopped"


def test_sensor_defers_to_a_trigger_that_never_stops_the_run(captaindata_emulator: Any) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    captaindata_emulator.configure(v3_running_seconds=60)
    workflow = next(w for w in CaptainDataHook().list_workflows() if len(w.steps) == 1)
    uid = launch(workflow.uid)
    sensor = CaptainDataRunSensor(task_id="s", run_uid=uid, poke_interval=1, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": FakeTI()})
    assert deferred.value.timeout is None
    assert deferred.value.trigger.serialize()[1]["stop_on_kill"] is False


# -- rule 5: the event loop is never blocked --------------------------------------------------


def test_trigger_never_blocks_the_event_loop(run_uid: str, captaindata_emulator: Any) -> None:
    # One read held 3 s: a blocking read stalls the loop that long, a non-blocking one leaves
    # only the machine's scheduling jitter (0.6 s seen with five suites on 2 cores), hence 1.5 s.
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}", delay=3.0, times=1)

    async def scenario() -> tuple[dict[str, Any], float]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        event = await first_event(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.2))
        ticker.cancel()
        return event, max(gaps)

    event, worst_gap = asyncio.run(scenario())
    assert event["status"] == "success"
    assert worst_gap < 1.5


# -- rule 6: transient errors are retried inside the trigger ----------------------------------


@pytest.mark.parametrize(
    "fault", [{"status": 429, "retry_after": 0}, {"status": 502}, {"drop": True}], ids=["429", "502", "drop"]
)
def test_transient_errors_beyond_one_read_keep_waiting(
    run_uid: str, captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch, fault: dict[str, Any]
) -> None:
    # Two tries per read: four failures in a row fail two whole reads, and the wait goes on.
    policy = RetryPolicy(attempts=2, backoff_initial=0.05, backoff_max=0.1)
    monkeypatch.setattr(
        CaptainDataRunTrigger, "_hook", lambda self: CaptainDataAsyncHook(retry_policy=policy)
    )
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{run_uid}", times=4, **fault)
    event = asyncio.run(first_event(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.1)))
    assert event["status"] == "success" and event["run_status"] == "finished"


# -- rule 8: closed vocabulary, failing closed ------------------------------------------------


@pytest.mark.parametrize("status", [401, 404])
def test_non_retryable_error_mid_wait_is_an_error_event_with_the_api_details(
    run_uid: str, captaindata_emulator: Any, status: int
) -> None:
    captaindata_emulator.configure(v3_running_seconds=60)

    async def scenario() -> dict[str, Any]:
        waiting = asyncio.ensure_future(
            first_event(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.2))
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await asyncio.to_thread(
            captaindata_emulator.add_fault,
            "GET",
            f"/v3/jobs/{run_uid}",
            status=status,
            times=None,
            error_label="RUN_GONE",
            message="the run was deleted",
        )
        return await waiting

    event = asyncio.run(scenario())
    assert event["status"] == "error" and event["run_uid"] == run_uid
    for part in (f"HTTP {status}", "RUN_GONE", "the run was deleted", "scope=", "ref="):
        assert part in event["message"]
    op = CaptainDataLaunchWorkflowOperator(
        task_id="t", workflow_uid=UID, inputs=[{"a": 1}], retry_on_failure=2
    )
    with pytest.raises(CaptainDataRunError, match="RUN_GONE"):
        op.execute_complete({}, event)
    assert len(captaindata_emulator.requests(method="POST")) == 1  # no retry run launched


@pytest.mark.parametrize(("outcome", "event_status"), [("stopped", "cancelled"), ("warning", "error")])
def test_stopped_or_failed_run_is_never_a_success(
    workflow_uid: str, captaindata_emulator: Any, outcome: str, event_status: str
) -> None:
    captaindata_emulator.force_outcome(workflow_uid, outcome, error_message="integration failed")
    uid = launch(workflow_uid)
    event = asyncio.run(first_event(CaptainDataRunTrigger(run_uid=uid, poll_interval=0.2)))
    assert event["status"] == event_status and event["run_status"] == outcome
    op = CaptainDataLaunchWorkflowOperator(task_id="t", workflow_uid=UID, inputs=[{"a": 1}])
    with pytest.raises(CaptainDataRunError, match="integration failed"):
        op.execute_complete({}, event)
    with pytest.raises(CaptainDataRunError, match="integration failed"):
        CaptainDataRunSensor(task_id="s", run_uid=uid).execute_complete({}, event)


def rewrite_status(monkeypatch: pytest.MonkeyPatch, rewrite: Any) -> None:
    """The real API answer, with its status rewritten (the emulator only answers known ones)."""
    real = CaptainDataAsyncHook.get_run

    async def get_run(self: CaptainDataAsyncHook, api_version: str, run_uid: str) -> Any:
        snapshot = await real(self, api_version, run_uid)
        return get_version(api_version).snapshot({**snapshot.raw, "status": rewrite(snapshot.status)})

    monkeypatch.setattr(CaptainDataAsyncHook, "get_run", get_run)


def test_unknown_status_fails_closed(run_uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # v3 statuses are lowercase: "Finished" or "archived" are not a success.
    rewrite_status(monkeypatch, lambda s: "Finished" if s == "finished" else s)
    event = asyncio.run(first_event(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.2)))
    assert (
        event["status"] == "error"
        and event["run_status"] == "Finished"
        and "failing closed" in event["message"]
    )


def test_v4_statuses_are_case_insensitive(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    captaindata_emulator.configure(v4_queued_seconds=0.1, v4_running_seconds=0.3)
    run = CaptainDataHook().run_action_async(
        "linkedin-extract-people",
        [{"linkedin_profile_url": "https://www.linkedin.com/in/a"}],
        callback_url="http://127.0.0.1:9/cb",
    )
    rewrite_status(monkeypatch, str.lower)
    event = asyncio.run(
        first_event(CaptainDataRunTrigger(run_uid=run.uid, api_version="v4", poll_interval=0.2))
    )
    assert event["status"] == "success" and event["run_status"] == "succeeded"


def test_trigger_logs_the_status_it_starts_from_and_each_change_at_info(
    run_uid: str, captaindata_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/troubleshooting.md says the trigger logs "Run ... is running" lines: a long wait
    must show them at INFO (they were DEBUG for the first status and the last one)."""
    caplog.set_level("INFO", logger="airflow_provider_captaindata.triggers.runs")
    event = asyncio.run(first_event(CaptainDataRunTrigger(run_uid=run_uid, poll_interval=0.1)))
    assert event["status"] == "success"
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_captaindata.triggers.runs"]
    assert all(r.levelname == "INFO" for r in caplog.records if r.name.endswith("triggers.runs"))
    # It starts from pending or running (timing), then one line per change, the last included.
    first, *changes = lines
    assert first in (f"Run {run_uid} is {s}: polling every 0.1 s" for s in ("pending", "running")), lines
    assert changes[-1] == f"Run {run_uid} is finished", lines
    statuses = [first.split(" is ")[1].split(":")[0]] + [c.rsplit(" ", 1)[1] for c in changes]
    assert len(statuses) == len(set(statuses)), lines  # changes only, never a repeat
