"""CaptainDataRunTrigger in its own async loop, and the operators' fail-closed completion."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_provider_captaindata.exceptions import (
    CaptainDataConfigError,
    CaptainDataError,
    CaptainDataRunError,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
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


@pytest.fixture
def run_uid(captaindata_emulator: Any) -> str:
    captaindata_emulator.configure(v3_pending_seconds=0.3, v3_running_seconds=1.5)
    hook = CaptainDataHook()
    workflow = next(w for w in hook.list_workflows() if len(w.steps) == 1)
    step = hook.get_workflow_details(workflow.uid).steps[0].step_uid
    inputs = [{"linkedin_profile_url": "https://www.linkedin.com/in/a"}]
    return hook.launch_workflow(workflow.uid, inputs=inputs, steps=[{"step_uid": step}], job_name="t").job_uid


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
