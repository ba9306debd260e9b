"""Parameter checks: a bad value fails at construction, naming the parameter, before any call."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor

WORKFLOW = {"task_id": "t", "workflow_uid": "7f3c2a10-0d5e-4c1b-9a57-2f1e0b6c9d44", "inputs": [{"a": 1}]}
NOT_FINITE = [float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("name", ["poll_interval", "timeout", "paused_grace_period"])
@pytest.mark.parametrize("value", NOT_FINITE)
def test_an_operator_refuses_seconds_that_are_not_finite(name: str, value: Any) -> None:
    # An infinite timeout passed the operator's check, launched the run, then failed at defer
    # time in the trigger's check: a run left behind by a parameter the operator accepted.
    with pytest.raises(CaptainDataConfigError, match=name):
        CaptainDataLaunchWorkflowOperator(**WORKFLOW, **{name: value})


@pytest.mark.parametrize("value", NOT_FINITE)
def test_the_sensor_refuses_seconds_that_are_not_finite(value: Any) -> None:
    with pytest.raises(CaptainDataConfigError, match="paused_grace_period"):
        CaptainDataRunSensor(task_id="wait", run_uid="r1", paused_grace_period=value)
