"""The watching scenario: v3 runs started on the emulator (as the Captain Data app would), some
failing, watched by ``CaptainDataRunFinishedTrigger`` (poll mode, the asset state store of
Airflow 3.3 as a dict) through faults on the run list and run reads, a triggerer restart,
two triggerers holding the trigger and a Captain Data clock skew."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx

from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger
from tests.invariants.harness import check, install
from tests.invariants.scenarios import Scenario
from tests.test_event_trigger import Api, DictStateStore, Watch, recreate

SHORT_OVERLAP = 0.2
SETTLE = 1.0  # seconds of looks after the last run is final (a duplicate shows up within it)


def run_watching(scenario: Scenario, emulator: Any) -> None:
    if scenario.behind_page:
        # Time compressed: the floor trails the newest fired run by 0.2 s instead of an hour,
        # so that a later finish moves it past a whole page within the scenario.
        with _overlap(SHORT_OVERLAP):
            _run_watching(scenario, emulator)
    else:
        _run_watching(scenario, emulator)


@contextlib.contextmanager
def _overlap(seconds: float) -> Iterator[None]:
    from airflow_provider_captaindata.triggers import event_state

    before = event_state.OVERLAP_SECONDS
    event_state.OVERLAP_SECONDS = seconds
    try:
        yield
    finally:
        event_state.OVERLAP_SECONDS = before


def _run_watching(scenario: Scenario, emulator: Any) -> None:
    emulator.configure(v3_pending_seconds=0.05)
    api = Api(emulator)
    workflow_uid = next(w for w in CaptainDataHook().list_workflows() if len(w.steps) == 1).uid
    asyncio.run(_watch(scenario, emulator, api, workflow_uid))


async def _watch(scenario: Scenario, emulator: Any, api: Api, workflow_uid: str) -> None:
    store = DictStateStore()
    # No finished_after: the first look marks what is already final, whatever the API's clock.
    trigger = CaptainDataRunFinishedTrigger(
        workflow_uid=workflow_uid, poll_interval=0.1, states=scenario.states
    )
    trigger.asset_state_store = store
    watches = [Watch(trigger)]
    if scenario.two_triggerers:
        watches.append(Watch(recreate(trigger)))
    started = time.monotonic()
    while trigger.state_key not in store.values:  # the first look is done
        check(time.monotonic() - started < 30, "the watcher made no first look", scenario.seed)
        await asyncio.sleep(0.02)
    expected: dict[str, str] = {}  # run uid -> the state it ends in
    long_runs: list[str] = []
    if scenario.behind_page:
        emulator.configure(v3_running_seconds=600.0)
        long_runs = [api.start_v3(workflow_uid, f"harness {scenario.seed} long {i}") for i in range(2)]
        emulator.configure(v3_running_seconds=0.05)
        short = [api.start_v3(workflow_uid, f"harness {scenario.seed} short {i}") for i in range(50)]
        expected.update(dict.fromkeys(short, "succeeded"))
        await await_final(*short)
    if scenario.failing:
        emulator.force_outcome(workflow_uid, "warning", times=len(scenario.failing))
    install(emulator, scenario, "GET", None)
    # Forced outcomes go to the runs started first: the failing ones are started first.
    order = scenario.failing + [i for i in range(len(scenario.runs)) if i not in scenario.failing]
    uids: dict[int, str] = {}
    stopped: list[Watch] = []
    for index in order:
        emulator.configure(v3_running_seconds=scenario.runs[index])
        uids[index] = api.start_v3(workflow_uid, f"harness {scenario.seed} run {index}")
        expected[uids[index]] = "failed" if index in scenario.failing else "succeeded"
        if scenario.restart and index == order[len(order) // 2]:
            await watches[0].stop()  # the triggerer goes down and comes back
            stopped.append(watches[0])
            watches[0] = Watch(recreate(trigger))
    await await_final(*uids.values())
    for uid in long_runs:  # each ends (stopped) later than everything above
        await asyncio.sleep(2 * SHORT_OVERLAP + 0.3)
        httpx.post(f"{emulator.v3_url}/jobs/{uid}/cancel", headers=api.v3).raise_for_status()
        expected[uid] = "cancelled"
    await asyncio.sleep(SETTLE + max(f.times for f in scenario.faults) * 0.3 if scenario.faults else SETTLE)
    fired: Counter[str] = Counter()
    for watch in [*stopped, *watches]:
        await watch.stop()
        while not watch.events.empty():
            fired[watch.events.get_nowait()["run_uid"]] += 1
    wanted = {uid for uid, state in expected.items() if scenario.states is None or state in scenario.states}
    # 5. each finished run fired exactly once per watcher
    check(
        fired == Counter(dict.fromkeys(wanted, 1)),
        "a finished run did not fire exactly once",
        {
            "never fired": {u: (list(expected).index(u), expected[u]) for u in wanted - set(fired)},
            "fired more than once": {uid: n for uid, n in fired.items() if n > 1},
            "fired, not wanted": sorted(set(fired) - wanted),
            "runs": len(expected),
            "order (first created first)": {uid: expected[uid] for uid in list(expected)[:3]},
        },
    )


async def await_final(*uids: str) -> None:
    """Wait for the runs to end, reading through the scenario's faults (they hit these reads too)."""
    from airflow_provider_captaindata.exceptions import CaptainDataError
    from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

    hook = CaptainDataAsyncHook()
    deadline = time.monotonic() + 60
    for uid in uids:
        while True:
            check(time.monotonic() < deadline, "a run never ended", uid)
            try:
                if (await hook.get_run("v3", uid)).state.is_final:
                    break
            except CaptainDataError:
                pass
            await asyncio.sleep(0.05)
