"""CaptainDataRunFinishedTrigger on its own async loop against the emulator.

Runs are started straight on the emulator's API (as the Captain Data app or a repeat schedule
would), never by our operators: the trigger must see every run of the workflow or action.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger

EXTRACT = "linkedin-extract-people"
QUIET = 1.5  # seconds a trigger is given to (wrongly) fire again


class DictStateStore:
    """The two calls the trigger makes on Airflow 3.3's asset state store, kept in a dict
    shared between trigger instances, as the metadata database is across triggerer restarts."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def _single_accessor(self) -> DictStateStore:
        return self

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values.get(key, default)))

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))  # JSON only, as the store keeps it


def recreate(trigger: CaptainDataRunFinishedTrigger) -> CaptainDataRunFinishedTrigger:
    """What a triggerer does on (re)start: a new instance from the serialized kwargs."""
    classpath, kwargs = trigger.serialize()
    json.dumps(kwargs)
    module, _, name = classpath.rpartition(".")
    again: CaptainDataRunFinishedTrigger = getattr(importlib.import_module(module), name)(**kwargs)
    again.asset_state_store = getattr(trigger, "asset_state_store", None)
    return again


class Watch:
    """One trigger run the way the triggerer runs it: a task that iterates ``run()`` and queues
    each event (the generator resumes at once after the hand-over); ``stop()`` cancels it, as a
    triggerer shutdown does."""

    def __init__(self, trigger: CaptainDataRunFinishedTrigger) -> None:
        self.trigger = trigger
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        async for event in self.trigger.run():
            self.events.put_nowait(event.payload)

    async def next(self, timeout: float = 30.0) -> dict[str, Any]:
        getter = asyncio.ensure_future(self.events.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter not in done:
            getter.cancel()
            if self.task in done:
                self.task.result()  # the trigger raised: show why
                raise AssertionError("the trigger ended")
            raise TimeoutError
        return getter.result()

    async def take(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        return [await self.next(timeout) for _ in range(count)]

    async def nothing_more(self) -> None:
        with pytest.raises(TimeoutError):
            extra = await self.next(QUIET)
            pytest.fail(f"fired again: {extra}")

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Api:
    """Starts runs on the emulator over plain HTTP, the way anything but this provider would."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.v3 = {"Authorization": f"x-api-key {emulator.api_key}", "x-project-id": emulator.project_uid}

    def start_v3(self, workflow_uid: str, name: str) -> str:
        step = CaptainDataHook().get_workflow_details(workflow_uid).steps[0].step_uid
        body = {
            "job_name": name,
            "inputs": [{"linkedin_profile_url": "https://www.linkedin.com/in/a"}],
            "steps": [{"step_uid": step}],
        }
        answer = httpx.post(
            f"{self.emulator.v3_url}/workflows/{workflow_uid}/schedule", json=body, headers=self.v3
        )
        answer.raise_for_status()
        return str(answer.json()["job_uid"])

    def start_v4(self, action: str = EXTRACT) -> str:
        body = {
            "inputs": [{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}],
            "callback": {"url": "http://127.0.0.1:9/nobody-listens", "headers": {}},
        }
        answer = httpx.post(
            f"{self.emulator.v4_url}/actions/{action}/run/async",
            json=body,
            headers={"X-API-Key": self.emulator.api_key},
        )
        answer.raise_for_status()
        return str(answer.json()["run_uid"])

    async def await_final(self, api_version: str, *uids: str) -> None:
        from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

        async def wait() -> None:
            hook = CaptainDataAsyncHook()
            for uid in uids:
                while not (await hook.get_run(api_version, uid)).state.is_final:
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(wait(), 30)

    def wait_final(self, api_version: str, *uids: str) -> None:
        asyncio.run(self.await_final(api_version, *uids))


@pytest.fixture
def api(captaindata_emulator: Any) -> Api:
    captaindata_emulator.configure(
        v3_pending_seconds=0.05, v3_running_seconds=0.3, v4_queued_seconds=0.05, v4_running_seconds=0.3
    )
    return Api(captaindata_emulator)


@pytest.fixture
def workflow_uid(api: Api) -> str:
    return next(w for w in CaptainDataHook().list_workflows() if len(w.steps) == 1).uid


def v3_trigger(workflow_uid: str, **kwargs: Any) -> CaptainDataRunFinishedTrigger:
    return CaptainDataRunFinishedTrigger(workflow_uid=workflow_uid, poll_interval=0.1, **kwargs)


def test_serializes_primitives_without_secret_and_hashes_stably(captaindata_emulator: Any) -> None:
    trigger = v3_trigger("wf-1", states=["succeeded"], finished_after="2026-01-01T00:00:00Z")
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert captaindata_emulator.api_key not in json.dumps(kwargs)
    assert recreate(trigger).serialize() == (classpath, kwargs)


@pytest.mark.airflow3
def test_is_an_event_trigger_with_a_stable_hash() -> None:
    from airflow.triggers.base import BaseEventTrigger

    trigger = v3_trigger("wf-1", states=["succeeded"])
    classpath, kwargs = trigger.serialize()

    assert isinstance(trigger, BaseEventTrigger)
    # AssetWatcher keys the trigger by this hash: two parses of a DAG must give the same one.
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*recreate(trigger).serialize())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"api_version": "v5"}, "api_version"),
        ({"api_version": "v3"}, "workflow_uid"),
        ({"api_version": "v3", "workflow_uid": "w", "mode": "push"}, "mode"),
        ({"api_version": "v4", "mode": "webhook"}, "webhook"),
        ({"api_version": "v4", "workflow_uid": "w"}, "workflow_uid"),
        ({"api_version": "v3", "workflow_uid": "w", "action": EXTRACT}, "action"),
        ({"api_version": "v3", "workflow_uid": "w", "states": ["finished"]}, "states"),
        ({"api_version": "v3", "workflow_uid": "w", "states": "failed"}, "states"),
        ({"api_version": "v3", "workflow_uid": "w", "poll_interval": 0}, "poll_interval"),
        ({"api_version": "v3", "workflow_uid": "w", "finished_after": "yesterday"}, "finished_after"),
        ({"api_version": "v3", "workflow_uid": "w", "webhook_name": "../x"}, "webhook_name"),
        ({"api_version": "v3", "workflow_uid": "w", "max_pages": 0}, "max_pages"),
        ({"api_version": "v3", "workflow_uid": "w", "captaindata_conn_id": None}, "captaindata_conn_id"),
    ],
)
def test_bad_kwargs_are_refused_naming_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=name):
        CaptainDataRunFinishedTrigger(**kwargs)


def test_v3_each_finished_run_fires_once_and_earlier_runs_do_not(api: Api, workflow_uid: str) -> None:
    before = api.start_v3(workflow_uid, "before the watcher")
    api.wait_final("v3", before)

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(v3_trigger(workflow_uid))
        first = asyncio.ensure_future(watch.next())
        await asyncio.sleep(0.3)  # the first look (the baseline) is done
        uids = [api.start_v3(workflow_uid, "from the app"), api.start_v3(workflow_uid, "repeat #2")]
        events = [await first, *await watch.take(1)]
        await watch.nothing_more()
        await watch.stop()
        assert sorted(e["run_uid"] for e in events) == sorted(uids)
        return events

    events = asyncio.run(scenario())
    assert before not in {e["run_uid"] for e in events}
    event = events[0]
    assert event["api_version"] == "v3" and event["workflow_uid"] == workflow_uid
    assert event["status"] == "finished" and event["state"] == "succeeded" and event["source"] == "poll"
    assert event["run_name"] in ("from the app", "repeat #2") and event["finished_at"]


def test_v3_failed_runs_fire_with_their_state_and_states_filters(
    api: Api, workflow_uid: str, captaindata_emulator: Any
) -> None:
    captaindata_emulator.force_outcome(workflow_uid, "warning", error_message="bad input")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        every = Watch(v3_trigger(workflow_uid))
        only_success = Watch(v3_trigger(workflow_uid, states=["succeeded"]))
        pending = asyncio.ensure_future(every.next()), asyncio.ensure_future(only_success.next())
        await asyncio.sleep(0.3)
        api.start_v3(workflow_uid, "fails")
        ok = api.start_v3(workflow_uid, "succeeds")
        failed_first, success = await pending[0], await pending[1]
        assert success["run_uid"] == ok  # the failed run was skipped, not fired
        await only_success.nothing_more()
        for watch in (every, only_success):
            await watch.stop()
        return failed_first, success

    failed, _ = asyncio.run(scenario())
    assert failed["state"] == "failed" and failed["status"] == "warning" and failed["message"] == "bad input"


def test_watermark_survives_a_restart_with_the_state_store(api: Api, workflow_uid: str) -> None:
    store = DictStateStore()
    trigger = v3_trigger(workflow_uid)
    trigger.asset_state_store = store

    async def before_restart() -> str:
        watch = Watch(trigger)
        pending = asyncio.ensure_future(watch.next())
        await asyncio.sleep(0.3)
        uid = api.start_v3(workflow_uid, "one")
        assert (await pending)["run_uid"] == uid
        await watch.stop()  # the triggerer goes down
        return uid

    fired = asyncio.run(before_restart())
    assert trigger.state_key in store.values
    # While no triggerer runs, another run finishes.
    while_down = api.start_v3(workflow_uid, "two")
    api.wait_final("v3", while_down)

    async def after_restart() -> dict[str, Any]:
        watch = Watch(recreate(trigger))
        event = await watch.next()
        await watch.nothing_more()  # the run fired before the restart does not fire again
        await watch.stop()
        return event

    assert asyncio.run(after_restart())["run_uid"] == while_down
    assert fired != while_down


def test_without_a_state_store_a_restart_starts_from_its_first_look(api: Api, workflow_uid: str) -> None:
    """Before Airflow 3.3 (documented): runs that finish while the triggerer is down are not fired
    (no duplicates either); with ``finished_after`` they fire, and so do earlier ones again."""
    first = api.start_v3(workflow_uid, "one")
    api.wait_final("v3", first)

    async def scenario() -> None:
        restarted = Watch(v3_trigger(workflow_uid))
        await restarted.nothing_more()
        await restarted.stop()
        replayed = Watch(v3_trigger(workflow_uid, finished_after="2000-01-01T00:00:00Z"))
        assert (await replayed.next())["run_uid"] == first
        await replayed.stop()

    asyncio.run(scenario())


def test_v4_async_runs_of_an_action_fire_once(api: Api) -> None:
    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(CaptainDataRunFinishedTrigger(api_version="v4", action=EXTRACT, poll_interval=0.1))
        everything = Watch(CaptainDataRunFinishedTrigger(api_version="v4", poll_interval=0.1))
        pending = asyncio.ensure_future(watch.take(2)), asyncio.ensure_future(everything.take(2))
        await asyncio.sleep(0.3)
        uids = {api.start_v4(), api.start_v4()}
        events, all_events = await pending[0], await pending[1]
        await watch.nothing_more()
        for w in (watch, everything):
            await w.stop()
        assert {e["run_uid"] for e in events} == uids == {e["run_uid"] for e in all_events}
        return events

    events = asyncio.run(scenario())
    assert all(e["action"] == EXTRACT and e["api_version"] == "v4" for e in events)
    assert {e["status"] for e in events} == {"SUCCEEDED"}
    assert {e["state"] for e in events} == {"succeeded"}


def test_a_failing_look_is_logged_and_the_watch_goes_on(
    api: Api, workflow_uid: str, captaindata_emulator: Any
) -> None:
    async def scenario() -> dict[str, Any]:
        watch = Watch(v3_trigger(workflow_uid))
        pending = asyncio.ensure_future(watch.next())
        await asyncio.sleep(0.3)
        captaindata_emulator.add_fault("GET", f"/v3/workflows/{workflow_uid}/jobs", status=404, times=2)
        uid = api.start_v3(workflow_uid, "after an outage")
        event = await pending
        await watch.stop()
        assert event["run_uid"] == uid
        return event

    asyncio.run(scenario())
    assert any(r["status"] == 404 for r in captaindata_emulator.requests("GET", "/v3/workflows/*/jobs"))


def asset_events(*payloads: dict[str, Any]) -> dict[str, Any]:
    """``triggering_asset_events`` as a task sees it: asset -> events with ``extra``."""
    from types import SimpleNamespace

    events = [SimpleNamespace(extra={"from_trigger": True, "payload": p}) for p in payloads]
    # The same event listed under an asset and an alias of it: still one run.
    return {"asset": events, "alias": events[:1]}


def test_collect_reads_every_triggering_run_once_oldest_first(
    api: Api, workflow_uid: str, tmp_path: Any
) -> None:
    from airflow_provider_captaindata.operators.collect import CaptainDataCollectRunOperator

    first, second = api.start_v3(workflow_uid, "a"), api.start_v3(workflow_uid, "b")
    api.wait_final("v3", first, second)
    context = {
        "triggering_asset_events": asset_events(
            {"run_uid": second, "api_version": "v3", "finished_at": "2026-01-01T00:00:02+00:00"},
            {"run_uid": first, "api_version": "v3", "finished_at": "2026-01-01T00:00:01+00:00"},
        )
    }
    out = tmp_path / "rows.jsonl"
    operator = CaptainDataCollectRunOperator(task_id="collect", output_path=str(out))
    summary = operator.execute(context)
    assert summary == {"path": f"file://{out}", "rows": 4, "run_uids": [first, second]}
    assert len(out.read_text().splitlines()) == 4
    rows = CaptainDataCollectRunOperator(task_id="c2", run_uid=first).execute({})
    assert len(rows) == 2


def test_collect_refuses_v4_runs_and_a_dag_run_without_events(captaindata_emulator: Any) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_captaindata.operators.collect import CaptainDataCollectRunOperator

    operator = CaptainDataCollectRunOperator(task_id="collect")
    with pytest.raises(AirflowFailException, match="no Captain Data run event"):
        operator.execute({})
    v4 = {"triggering_asset_events": asset_events({"run_uid": "r4", "api_version": "v4"})}
    with pytest.raises(AirflowFailException, match="r4 are v4 runs"):
        operator.execute(v4)
    assert captaindata_emulator.requests("GET", "/v3/jobs/*") == []
