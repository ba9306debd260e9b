"""The async transport's pools: one per event loop, each request with its own policy's
timeouts, and freed with its loop (issue 21 #11, #12), over real HTTP against the emulator."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import ApiRequest, RetryPolicy
from airflow_provider_captaindata.client.transport_async import AsyncTransport
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

SHORT = RetryPolicy(attempts=1, read_timeout=0.3)
LONG = RetryPolicy(attempts=1, read_timeout=10.0)


@pytest.fixture
def emulator(captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(captaindata_emulator.connection_json()))
    return captaindata_emulator


@pytest.fixture
def run_uid(emulator: Any) -> str:
    hook = CaptainDataHook()
    return hook.run_action_async(
        "linkedin-extract-people",
        [{"linkedin_profile_url": "https://www.linkedin.com/in/person-00000"}],
        callback_url="http://127.0.0.1:9/cb",
    ).uid


def test_each_request_has_its_own_policys_timeouts_on_a_shared_loop(emulator: Any, run_uid: str) -> None:
    """The loop's session carried the timeouts of whichever policy came first: a 10 s read
    timeout fired at 0.3 s (a spurious OUTCOME_UNKNOWN for a live action)."""

    async def both() -> str:
        await CaptainDataAsyncHook(retry_policy=SHORT).get_run("v4", run_uid)  # makes the loop's pool
        emulator.add_fault("GET", f"/v4/runs/{run_uid}", delay=1.0)
        snapshot = await CaptainDataAsyncHook(retry_policy=LONG).get_run("v4", run_uid)
        await AsyncTransport.aclose()
        return snapshot.uid

    assert asyncio.run(both()) == run_uid


def test_the_short_policy_still_times_out(emulator: Any, run_uid: str) -> None:
    from airflow_provider_captaindata.exceptions import CaptainDataTransportError

    async def short_after_long() -> None:
        await CaptainDataAsyncHook(retry_policy=LONG).get_run("v4", run_uid)
        emulator.add_fault("GET", f"/v4/runs/{run_uid}", delay=1.0)
        try:
            await CaptainDataAsyncHook(retry_policy=SHORT).get_run("v4", run_uid)
        finally:
            await AsyncTransport.aclose()

    with pytest.raises(CaptainDataTransportError, match=r"no answer within 0\.3 s"):
        asyncio.run(short_after_long())


async def _one_call(emulator: Any) -> weakref.ref[asyncio.AbstractEventLoop]:
    # The transport alone: Airflow's async connection lookup keeps the last loop it ran on in a
    # thread-local (asgiref), which would hide what the transport does.
    request = ApiRequest("GET", f"{emulator.v4_url}/workspaces", {"X-API-Key": emulator.api_key})
    await AsyncTransport(LONG).send(request)
    return weakref.ref(asyncio.get_running_loop())


def _freed(loop: weakref.ref[asyncio.AbstractEventLoop]) -> bool:
    gc.collect()
    return loop() is None


def test_a_pool_is_freed_with_its_loop(emulator: Any) -> None:
    """The registry's values held their loop: every ended loop and its session stayed."""
    before = len(AsyncTransport._pools)
    loop = asyncio.run(_one_call(emulator))  # no aclose: the loop's shutdown must do it
    assert _freed(loop)
    assert len(AsyncTransport._pools) == before


def test_a_loop_closed_without_its_shutdown_is_freed_at_the_next_pool(emulator: Any) -> None:
    loop = asyncio.new_event_loop()
    ref = loop.run_until_complete(_one_call(emulator))
    loop.close()  # no shutdown_asyncgens: the pool's closer never ran
    del loop
    other = asyncio.run(_one_call(emulator))
    assert _freed(ref) and _freed(other)
