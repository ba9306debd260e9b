"""The event trigger fires each finished run exactly once, whatever the list order, an error on
another run, a ``states`` filter, a missing finish time or a second triggerer holding it
(issue 21 #5, #7, #8 and the handover question; #6 is in tests/callbacks/test_webhooks.py),
against the emulator over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator.records import iso
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.triggers import event_state
from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger
from tests.test_event_trigger import EXTRACT, Api, DictStateStore, Watch, recreate

SHORT_OVERLAP = 0.2  # seconds: lets the floor pass a run within a test instead of an hour


def since_now() -> str:
    """``finished_after`` for a watcher started now: no baseline look to wait for (the runs a
    test starts fire even when a loaded machine delays the first look past their finish)."""
    return iso(time.time() - 1.0) or ""


@pytest.fixture
def api(captaindata_emulator: Any) -> Api:
    captaindata_emulator.configure(
        v3_pending_seconds=0.05, v3_running_seconds=0.05, v4_queued_seconds=0.05, v4_running_seconds=0.3
    )
    return Api(captaindata_emulator)


@pytest.fixture
def workflow_uid(api: Api) -> str:
    return next(w for w in CaptainDataHook().list_workflows() if len(w.steps) == 1).uid


def test_a_long_run_behind_a_full_page_of_newer_finished_runs_fires(
    api: Api, workflow_uid: str, captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#5: v3 lists runs by creation. Once a later-finishing run moved the floor past the 50 newer
    short runs, page 0 looks old: the scan stopped there and the long run on page 1 never fired."""
    monkeypatch.setattr(event_state, "OVERLAP_SECONDS", SHORT_OVERLAP)

    def cancel(uid: str) -> None:
        httpx.post(f"{api.emulator.v3_url}/jobs/{uid}/cancel", headers=api.v3).raise_for_status()

    async def scenario() -> Counter[str]:
        watch = Watch(
            CaptainDataRunFinishedTrigger(
                workflow_uid=workflow_uid, poll_interval=0.1, finished_after=since_now()
            )
        )
        captaindata_emulator.configure(v3_running_seconds=600.0)
        long_runs = [api.start_v3(workflow_uid, "long"), api.start_v3(workflow_uid, "longest")]
        captaindata_emulator.configure(v3_running_seconds=0.05)
        short = [api.start_v3(workflow_uid, f"short {i}") for i in range(50)]  # page 0
        fired = Counter(e["run_uid"] for e in await watch.take(50, timeout=20))
        await asyncio.sleep(2 * SHORT_OVERLAP)
        cancel(long_runs[0])  # finishes (stopped): its event moves the floor past page 0
        fired.update(e["run_uid"] for e in await watch.take(1))
        await asyncio.sleep(0.5)  # looks that stop at page 0
        cancel(long_runs[1])
        fired.update(e["run_uid"] for e in await watch.take(1, timeout=10))
        await watch.nothing_more()
        await watch.stop()
        assert set(fired) == {*long_runs, *short}
        return fired

    assert set(asyncio.run(scenario()).values()) == {1}


def test_a_run_skipped_by_states_fires_when_resumed_to_a_wanted_state(
    api: Api, captaindata_emulator: Any
) -> None:
    """#7 (v4): a BLOCKED run skipped by ``states`` was marked by uid alone, so its SUCCEEDED
    finish after a resume was taken as already fired."""
    captaindata_emulator.force_outcome(EXTRACT, "BLOCKED")

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        watch = Watch(
            CaptainDataRunFinishedTrigger(
                api_version="v4",
                action=EXTRACT,
                states=["succeeded"],
                poll_interval=0.1,
                finished_after=since_now(),
            )
        )
        uid = api.start_v4()
        await api.await_final("v4", uid)
        await watch.nothing_more()  # BLOCKED is not wanted: looked at, not fired
        resumed = httpx.post(
            f"{api.emulator.v4_url}/runs/{uid}/resume", headers={"X-API-Key": api.emulator.api_key}
        )
        resumed.raise_for_status()
        events = [await watch.next(timeout=15)]
        await watch.nothing_more()
        await watch.stop()
        return uid, events

    uid, events = asyncio.run(scenario())
    assert [(e["run_uid"], e["status"]) for e in events] == [(uid, "SUCCEEDED")]


def test_a_final_run_listed_without_a_finish_time_fires_once(
    api: Api, workflow_uid: str, captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#8: a final run with no finish time was given the look's time on every look, so once a
    later run moved the floor past its first mark it fired again."""
    monkeypatch.setattr(event_state, "OVERLAP_SECONDS", SHORT_OVERLAP)
    undated_uid, later_uid = api.start_v3(workflow_uid, "undated"), api.start_v3(workflow_uid, "later")
    api.wait_final("v3", undated_uid, later_uid)
    listed = httpx.get(f"{api.emulator.v3_url}/workflows/{workflow_uid}/jobs", headers=api.v3)
    jobs = {j["uid"]: j for j in listed.json()}
    undated = {**jobs[undated_uid], "finish_time": None}
    later = {**jobs[later_uid], "finish_time": iso(time.time() + 0.5)}
    jobs_path = f"/v3/workflows/{workflow_uid}/jobs"
    captaindata_emulator.add_fault("GET", jobs_path, body=[later, undated], times=None)

    async def scenario() -> list[dict[str, Any]]:
        trigger = CaptainDataRunFinishedTrigger(
            workflow_uid=workflow_uid, poll_interval=0.1, finished_after="2000-01-01T00:00:00Z"
        )
        watch = Watch(trigger)
        events = await watch.take(2)
        await asyncio.sleep(1.0)  # the floor passes the undated run's first mark
        await watch.nothing_more()
        await watch.stop()
        return events

    assert sorted(e["run_uid"] for e in asyncio.run(scenario())) == sorted([undated_uid, later_uid])


def test_two_triggerers_holding_one_trigger_fire_each_run_once_and_keep_every_mark(
    api: Api, workflow_uid: str
) -> None:
    """The handover question, settled: two triggerers running the same trigger against one state
    store each fired every run, and each saved its own watermark over the other's. Each now
    merges what the other stored before firing and before saving."""
    store = DictStateStore()
    trigger = CaptainDataRunFinishedTrigger(
        workflow_uid=workflow_uid, poll_interval=0.1, finished_after=since_now()
    )
    trigger.asset_state_store = store

    async def scenario() -> tuple[list[str], list[str]]:
        first, second = Watch(trigger), Watch(recreate(trigger))
        uids = [api.start_v3(workflow_uid, f"run {i}") for i in range(4)]
        await api.await_final("v3", *uids)
        await asyncio.sleep(1.0)  # several looks of both after the last finish
        fired = []
        for watch in (first, second):
            await watch.stop()
            while not watch.events.empty():
                fired.append(watch.events.get_nowait()["run_uid"])
        return uids, fired

    uids, fired = asyncio.run(scenario())
    assert sorted(fired) == sorted(uids)
    stored = store.values[trigger.state_key]
    assert {key.partition("|")[0] for key in stored["runs"]["seen"]} >= set(uids)


def test_the_stored_state_keeps_no_run_pending_once_marked(
    api: Api, workflow_uid: str, captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found proving the invariant harness on #8: each save merged the stored copy back in, so
    runs no longer pending came back on every save (in webhook mode every run ever named was
    read by uid on every look for a week)."""
    monkeypatch.setattr(event_state, "OVERLAP_SECONDS", SHORT_OVERLAP)
    captaindata_emulator.configure(v3_running_seconds=0.3)  # each run is seen going: pending
    store = DictStateStore()

    async def scenario() -> None:
        trigger = CaptainDataRunFinishedTrigger(
            workflow_uid=workflow_uid, poll_interval=0.1, finished_after=since_now()
        )
        trigger.asset_state_store = store
        watch = Watch(trigger)
        api.start_v3(workflow_uid, "first")
        await watch.take(1)
        await asyncio.sleep(1.0)  # the second finishes well past the overlap after the first
        api.start_v3(workflow_uid, "second")
        await watch.take(1)
        await asyncio.sleep(0.5)  # looks and saves after both fired
        await watch.stop()

    asyncio.run(scenario())
    (stored,) = store.values.values()
    assert stored["pending"] == {}


def stored_size(store: DictStateStore) -> int:
    """Bytes of the stored state, as JSON (what the metadata database keeps)."""
    (stored,) = store.values.values()
    return len(json.dumps(stored))


def test_the_stored_marks_stay_within_the_overlap_of_the_newest_run(
    api: Api, workflow_uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21 (the last session's known defect): every save merged the stored copy back in with
    every mark it held, so the marks the floor forgot came back and the stored state grew by
    about 50 bytes per finished run, forever. Runs finishing over many overlaps (0.2 s here for
    an hour) now leave only the marks at or above the floor: the state stops growing."""
    monkeypatch.setattr(event_state, "OVERLAP_SECONDS", SHORT_OVERLAP)
    store = DictStateStore()
    runs = 24

    async def scenario() -> tuple[list[str], list[str], list[int]]:
        trigger = CaptainDataRunFinishedTrigger(
            workflow_uid=workflow_uid, poll_interval=0.1, finished_after=since_now()
        )
        trigger.asset_state_store = store
        watch = Watch(trigger)
        uids, fired, sizes = [], [], []
        for i in range(runs):
            uids.append(api.start_v3(workflow_uid, f"run {i}"))
            fired.extend(e["run_uid"] for e in await watch.take(1))
            await asyncio.sleep(SHORT_OVERLAP / 2)  # the next run finishes apart from this one
            sizes.append(stored_size(store))
        await asyncio.sleep(0.5)  # looks and saves after the last fired
        await watch.stop()
        return uids, fired, sizes

    uids, fired, sizes = asyncio.run(scenario())
    assert fired == uids
    (stored,) = store.values.values()
    marks = stored["runs"]["seen"]
    assert sizes[-1] < 2 * sizes[runs // 4], f"stored bytes after each run: {sizes}"
    assert len(marks) <= runs // 4, f"{len(marks)} marks stored after {runs} runs"
    assert min(marks.values()) >= stored["runs"]["floor"]


class StalledStore(DictStateStore):
    """The same stored values, read through a gate: a triggerer whose state-store reads stall
    (a busy loop, a slow database) while the other holder goes on."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.open = asyncio.Event()
        self.open.set()

    async def aget(self, key: str, default: Any = None) -> Any:
        await self.open.wait()
        return await super().aget(key, default)


def test_a_run_pending_in_one_triggerer_and_forgotten_by_the_other_does_not_fire_again(
    api: Api, workflow_uid: str, captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What took back the first bounding of the marks (invariant harness seed 100, two
    triggerers: every run fired twice): a run seen going by one holder fired on the other,
    whose floor then passed it and forgot its mark; the first, finding it final, fired it again
    (a pending run was let through below the floor). Below the floor nothing fires now."""
    monkeypatch.setattr(event_state, "OVERLAP_SECONDS", SHORT_OVERLAP)
    store = DictStateStore()

    def trigger(stalled: bool) -> CaptainDataRunFinishedTrigger:
        made = CaptainDataRunFinishedTrigger(
            workflow_uid=workflow_uid, poll_interval=0.1, finished_after=since_now()
        )
        made.asset_state_store = StalledStore(store.values) if stalled else store
        return made

    def stored() -> Any:
        return next(iter(store.values.values()), {})

    async def scenario() -> tuple[str, str, list[str], list[str]]:
        captaindata_emulator.configure(v3_running_seconds=2.0)
        first_run = api.start_v3(workflow_uid, "seen going by the stalled holder")
        stalled_trigger = trigger(stalled=True)
        stalled = Watch(stalled_trigger)
        deadline = time.monotonic() + 10
        while first_run not in stored().get("pending", {}):  # its look saw it going, and saved
            assert time.monotonic() < deadline, "the stalled holder never saw the run going"
            await asyncio.sleep(0.01)
        stalled_trigger.asset_state_store.open.clear()  # from now on its store reads wait
        fast = Watch(trigger(stalled=False))
        fired_fast = [e["run_uid"] for e in await fast.take(1)]
        await asyncio.sleep(2 * SHORT_OVERLAP)
        captaindata_emulator.configure(v3_running_seconds=0.05)
        later_run = api.start_v3(workflow_uid, "finishes past the overlap")
        fired_fast.extend(e["run_uid"] for e in await fast.take(1))
        deadline = time.monotonic() + 10
        while any(key.startswith(first_run) for key in stored()["runs"]["seen"]):
            assert time.monotonic() < deadline, "the first run's mark was never forgotten"
            await asyncio.sleep(0.02)  # the fast holder's floor passed the first run
        stalled_trigger.asset_state_store.open.set()  # it goes on, the first run pending
        await asyncio.sleep(1.0)  # its looks find the first run final
        for watch in (stalled, fast):
            await watch.stop()
        fired_stalled = []
        while not stalled.events.empty():
            fired_stalled.append(stalled.events.get_nowait()["run_uid"])
        return first_run, later_run, fired_fast, fired_stalled

    first_run, later_run, fired_fast, fired_stalled = asyncio.run(scenario())
    assert fired_fast == [first_run, later_run]
    assert fired_stalled == []
    assert stored()["pending"] == {}  # not put back by a copy that still held it pending
