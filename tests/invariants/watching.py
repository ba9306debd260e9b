"""The watching scenario: runs started on the emulator (as the Captain Data app would), some
failing, watched by ``CaptainDataRunFinishedTrigger`` (the asset state store of Airflow 3.3 as
a dict) through faults on the run list and run reads, a triggerer restart, two triggerers
holding the trigger and a Captain Data clock skew: v3 runs polled (some listed without a finish
time) or named by webhooks a real receiver stored, or v4 action runs BLOCKED then resumed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.triggers.event_state import WatchState, fire_key
from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger
from tests.invariants.harness import LONG_POLICY, POLICY, check, hooks_default_to, install
from tests.invariants.scenarios import Scenario
from tests.test_event_trigger import EXTRACT, Api, DictStateStore, Watch, recreate

SHORT_OVERLAP = 0.2
SETTLE = 1.0  # seconds of looks after every wanted run fired (a duplicate shows up within it)
SLOW_ANSWER = 0.8  # seconds: past POLICY's read timeout, well within LONG_POLICY's
V4_PATHS = {"/v3/workflows/*/jobs": "/v4/runs", "/v3/jobs/*": "/v4/runs/*"}
UNDATED = "* undated"
UNREADABLE_SECONDS = 1.0


def run_watching(scenario: Scenario, emulator: Any, folder: Path) -> None:
    with contextlib.ExitStack() as stack:
        if scenario.behind_page or scenario.undated:
            # Time compressed: the floor trails the newest fired run by 0.2 s instead of an
            # hour, so that a later finish moves it past a page (or an undated run's mark).
            stack.enter_context(_overlap(SHORT_OVERLAP))
        if scenario.mode == "webhook":
            stack.enter_context(_receiver(emulator, folder))
        if scenario.slow:
            stack.enter_context(hooks_default_to(LONG_POLICY))
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


@contextlib.contextmanager
def _receiver(emulator: Any, folder: Path) -> Iterator[None]:
    """A real callback receiver storing the emulator's v3 webhooks in ``folder``; the
    connection names that storage, as a deployment's would."""
    import json

    from airflow_provider_captaindata.callbacks.app import create_app
    from airflow_provider_captaindata.callbacks.webhooks import webhook_url_for
    from tests.callbacks.conftest import SECRET, ServerThread

    storage = (folder / "callbacks").as_uri()
    server = ServerThread(create_app(secret=SECRET, storage=storage))
    name = "AIRFLOW_CONN_CAPTAINDATA_DEFAULT"
    before = os.environ[name]
    connection = json.loads(before)
    connection["extra"]["callback_storage"] = storage
    os.environ[name] = json.dumps(connection)
    emulator.set_webhook(webhook_url_for(server.base_url, SECRET))
    try:
        yield
    finally:
        os.environ[name] = before
        server.stop()


def _run_watching(scenario: Scenario, emulator: Any) -> None:
    emulator.configure(v3_pending_seconds=0.05, v4_queued_seconds=0.05)
    if scenario.undated:
        emulator.configure(v3_list_undated_names=UNDATED)
    api = Api(emulator)
    workflow_uid = next(w for w in CaptainDataHook().list_workflows() if len(w.steps) == 1).uid
    asyncio.run(_watch(scenario, emulator, api, workflow_uid))


def _trigger(scenario: Scenario, workflow_uid: str) -> CaptainDataRunFinishedTrigger:
    # No finished_after: the first look marks what is already final, whatever the API's clock.
    if scenario.api == "v4":
        return CaptainDataRunFinishedTrigger(
            api_version="v4", action=EXTRACT, poll_interval=0.1, states=scenario.states
        )
    return CaptainDataRunFinishedTrigger(
        workflow_uid=workflow_uid, poll_interval=0.1, states=scenario.states, mode=scenario.mode
    )


def _install(scenario: Scenario, emulator: Any) -> None:
    if scenario.api == "v4":
        faults = [type(f)(f.kind, V4_PATHS[f.target], f.times) for f in scenario.faults]
        scenario = Scenario.from_json(scenario.to_json())
        scenario.faults = faults
    install(emulator, scenario, "GET", None)
    if scenario.slow:
        # Added last: the drawn faults come first, then every run read is answered slowly.
        for path in V4_PATHS.values() if scenario.api == "v4" else V4_PATHS:
            emulator.add_fault("GET", path, times=None, delay=SLOW_ANSWER)


async def _watch(scenario: Scenario, emulator: Any, api: Api, workflow_uid: str) -> None:
    if scenario.slow:
        await _first_request_with(POLICY, scenario, workflow_uid)
    store = DictStateStore()
    trigger = _trigger(scenario, workflow_uid)
    if not scenario.in_memory:
        trigger.asset_state_store = store
    watches = [Watch(trigger)]
    if scenario.two_triggerers:
        watches.append(Watch(recreate(trigger)))
    started = time.monotonic()
    while _stored(store, trigger) is None:  # the first look is done
        check(time.monotonic() - started < 30, "the watcher made no first look", scenario.seed)
        await asyncio.sleep(0.02)
    expected: dict[tuple[str, str], int] = {}  # (run uid, state it ends in) -> order of creation
    long_runs: list[str] = []
    if scenario.behind_page:
        emulator.configure(v3_running_seconds=600.0)
        long_runs = [api.start_v3(workflow_uid, f"harness {scenario.seed} long {i}") for i in range(2)]
        emulator.configure(v3_running_seconds=0.05)
        short = [api.start_v3(workflow_uid, f"harness {scenario.seed} short {i}") for i in range(50)]
        expected.update({(uid, "succeeded"): len(expected) for uid in short})
        await await_final(scenario.api, *short)
    if scenario.failing:
        target, outcome = (EXTRACT, "BLOCKED") if scenario.api == "v4" else (workflow_uid, "warning")
        emulator.force_outcome(target, outcome, times=len(scenario.failing))
    _install(scenario, emulator)
    # Forced outcomes go to the runs started first: the failing ones are started first.
    order = scenario.failing + [i for i in range(len(scenario.runs)) if i not in scenario.failing]
    uids: dict[int, str] = {}
    unreadable = ""
    stopped: list[Watch] = []
    for index in order:
        emulator.configure(v3_running_seconds=scenario.runs[index], v4_running_seconds=scenario.runs[index])
        if scenario.api == "v4":
            uids[index] = api.start_v4()
        else:
            undated = " undated" if index in scenario.undated else ""
            uids[index] = api.start_v3(workflow_uid, f"harness {scenario.seed} run {index}{undated}")
        expected[(uids[index], "failed" if index in scenario.failing else "succeeded")] = len(expected)
        if index == scenario.unreadable:
            # Every read of it by uid fails until the others are final and looked at.
            path = f"/v4/runs/{uids[index]}" if scenario.api == "v4" else f"/v3/jobs/{uids[index]}"
            unreadable = emulator.add_fault("GET", path, times=None, malformed=True)
        if scenario.restart and index == order[len(order) // 2]:
            await watches[0].stop()  # the triggerer goes down and comes back
            stopped.append(watches[0])
            watches[0] = Watch(recreate(trigger))
    await await_final(scenario.api, *(uid for i, uid in uids.items() if i != scenario.unreadable))
    if scenario.unreadable is not None:
        await asyncio.sleep(UNREADABLE_SECONDS)  # looks that find the others final meanwhile
        httpx.delete(f"{emulator.base_url}/_emulator/faults/{unreadable}").raise_for_status()
        await await_final(scenario.api, uids[scenario.unreadable])
    if scenario.api == "v4":
        for index in scenario.failing:  # BLOCKED, then resumed once the watchers saw it
            await _marked(lambda: _stored(store, trigger), trigger, uids[index], "BLOCKED")
            resumed = httpx.post(
                f"{emulator.v4_url}/runs/{uids[index]}/resume", headers={"X-API-Key": emulator.api_key}
            )
            resumed.raise_for_status()
            expected[(uids[index], "succeeded")] = len(expected)
        await await_final(scenario.api, *(uids[i] for i in scenario.failing))
    for uid in long_runs:  # each ends (stopped) later than everything above
        await asyncio.sleep(2 * SHORT_OVERLAP + 0.3)
        httpx.post(f"{emulator.v3_url}/jobs/{uid}/cancel", headers=api.v3).raise_for_status()
        expected[(uid, "cancelled")] = len(expected)
    wanted = {key for key in expected if scenario.states is None or key[1] in scenario.states}
    fired = await _fired(wanted, [*stopped, *watches], scenario)
    # 5. each finished run fired exactly once per watcher (per final status it reached)
    check(
        fired == Counter(dict.fromkeys(wanted, 1)),
        "a finished run did not fire exactly once",
        {
            "never fired": {f"{u} {s}": expected[(u, s)] for u, s in wanted - set(fired)},
            "fired more than once": {f"{u} {s}": n for (u, s), n in fired.items() if n > 1},
            "fired, not wanted": sorted(f"{u} {s}" for u, s in set(fired) - wanted),
            "runs": len(expected),
            "order (first created first)": [f"{u} {s}" for u, s in list(expected)[:3]],
        },
    )


async def _fired(
    wanted: set[tuple[str, str]], watches: list[Watch], scenario: Scenario
) -> Counter[tuple[str, str]]:
    """Every event of every holder, once each wanted run fired (or a deadline) and a settle."""
    fired: Counter[tuple[str, str]] = Counter()

    def drain() -> None:
        for watch in watches:
            while not watch.events.empty():
                event = watch.events.get_nowait()
                fired[(event["run_uid"], event["state"])] += 1

    deadline = time.monotonic() + 15
    while not wanted <= set(fired) and time.monotonic() < deadline:
        drain()
        await asyncio.sleep(0.05)
    faulted = max((f.times for f in scenario.faults), default=0)
    await asyncio.sleep(SETTLE + faulted * 0.3)
    for watch in watches:
        await watch.stop()
    drain()
    return fired


async def _marked(stored: Any, trigger: CaptainDataRunFinishedTrigger, uid: str, status: str) -> None:
    """Wait until the watcher's state marks the run in ``status`` (its look at it is done)."""
    deadline = time.monotonic() + 30
    while not WatchState.from_json(stored() or {}).is_marked(fire_key(uid, status)):
        check(time.monotonic() < deadline, "no watcher looked at a final run", {"run": uid, "status": status})
        await asyncio.sleep(0.05)


def _stored(store: DictStateStore, trigger: CaptainDataRunFinishedTrigger) -> Any:
    """The watcher's saved state: in the store, or in the trigger's memory (no store)."""
    if getattr(trigger, "asset_state_store", None) is None:
        return trigger._memory_state
    return store.values.get(trigger.state_key)


async def _first_request_with(policy: Any, scenario: Scenario, workflow_uid: str) -> None:
    """One read with ``policy`` on this loop before anything else: the loop's first request
    (a pool made for the loop must not keep this policy's timeouts for the others)."""
    from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

    hook = CaptainDataAsyncHook(retry_policy=policy)
    if scenario.api == "v4":
        await hook.list_action_runs(action_name=EXTRACT, limit=1)
    else:
        await hook.list_workflow_runs(workflow_uid, 0)


async def await_final(api_version: str, *uids: str) -> None:
    """Wait for the runs to end, reading through the scenario's faults (they hit these reads too)."""
    from airflow_provider_captaindata.exceptions import CaptainDataError
    from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

    hook = CaptainDataAsyncHook()
    deadline = time.monotonic() + 20  # a failing scenario is shrunk: each rerun waits this long
    for uid in uids:
        while True:
            check(time.monotonic() < deadline, "a run never ended", uid)
            try:
                if (await hook.get_run(api_version, uid)).state.is_final:
                    break
            except CaptainDataError:
                pass
            await asyncio.sleep(0.05)
