"""Parameter checks: a bad value fails at construction, naming the parameter, before any call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor
from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

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


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"poll_interval": float("nan")}, "poll_interval"),
        ({"timeout_at": float("inf")}, "timeout_at"),
        ({"paused_grace_period": float("nan")}, "paused_grace_period"),
        ({"captaindata_conn_id": ""}, "captaindata_conn_id"),
    ],
)
def test_the_trigger_refuses_what_the_operator_refuses(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=name):
        CaptainDataRunTrigger(run_uid="r1", **kwargs)


def test_seconds_keep_their_meaning() -> None:
    from airflow_provider_captaindata.params import seconds, whole_number

    assert seconds("x", timedelta(minutes=2)) == 120.0
    assert seconds("x", None, optional=True) is None
    assert seconds("x", -5, lower="any") == -5.0
    for bad in (0, -1, True, "10", None):
        with pytest.raises(CaptainDataConfigError, match=r"^x must be a positive number of seconds"):
            seconds("x", bad)
    assert whole_number("n", 0, minimum=0) == 0 and whole_number("n", None, minimum=1, optional=True) is None
    for bad in (0, True, 1.5, "3"):
        with pytest.raises(CaptainDataConfigError, match=r"^n must be an int >= 1"):
            whole_number("n", bad, minimum=1)


def test_async_without_a_receiver_names_callback_url_and_what_is_missing(captaindata_emulator: Any) -> None:
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

    op = CaptainDataRunActionOperator(
        task_id="a",
        action="linkedin-extract-people",
        mode="async",
        inputs=[{"linkedin_profile_url": "https://www.linkedin.com/in/a"}],
    )
    # One text for "the receiver needs these fields" (callbacks.tokens), named for the operator.
    with pytest.raises(
        CaptainDataConfigError, match=r"^callback_url: .*callback_base_url, callback_secret, callback_storage"
    ):
        op.receiver_settings()
    assert not captaindata_emulator.requests(method="POST")
