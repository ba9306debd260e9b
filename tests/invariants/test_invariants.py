"""The randomized invariant harness: seeded scenarios (tests/invariants/scenarios.py) run over
the real operators (``dag.test()``), the event trigger and the emulator over loopback, each
checked against the emulator's own record (docs/guarantees.md).

``make test`` runs a fixed budget: ``CAPTAINDATA_HARNESS_SCENARIOS`` scenarios (default 6) from
seed ``CAPTAINDATA_HARNESS_SEED`` (default 0), within ``CAPTAINDATA_HARNESS_SECONDS`` (default
60). ``make soak`` runs thousands from a random seed and reports how many ran. A failure prints
its seed, a smaller scenario that still fails, and the command that replays it.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from tests.invariants.harness import Violation, check, harness_policy
from tests.invariants.scenarios import Scenario, draw, smaller

SCENARIOS = int(os.environ.get("CAPTAINDATA_HARNESS_SCENARIOS", "6"))
SEED = int(os.environ.get("CAPTAINDATA_HARNESS_SEED", "0"))
SECONDS = float(os.environ.get("CAPTAINDATA_HARNESS_SECONDS", "60"))
REPLAY = os.environ.get("CAPTAINDATA_HARNESS_REPLAY")  # a scenario's JSON, as a failure prints it
SHRINK_RUNS = 12
_dag_ids = count()


def run(scenario: Scenario, emulator: Any) -> None:
    """One scenario on a reset emulator; raises Violation when an invariant breaks."""
    from tests.invariants.acting import run_acting
    from tests.invariants.launching import run_launching
    from tests.invariants.watching import run_watching

    emulator.reset()
    # Set once, before anything: Captain Data's clock is off, it does not jump.
    emulator.configure(clock_skew_seconds=scenario.clock_skew)
    folder = Path(tempfile.mkdtemp(prefix=f"harness-{scenario.seed}-"))
    try:
        with harness_policy():
            if scenario.kind == "acting":
                run_acting(scenario, emulator, folder, f"harness_{scenario.seed}_{next(_dag_ids)}")
            elif scenario.kind == "launching":
                run_launching(scenario, emulator, f"harness_{scenario.seed}_{next(_dag_ids)}")
            else:
                run_watching(scenario, emulator, folder)
    finally:
        emulator.reset()
        shutil.rmtree(folder, ignore_errors=True)
    # 6. memory: no ended event loop (every fan-out and watcher ran on its own) is still held
    check(
        leaked_loops() == 0, "ended event loops are still held by the async transport's pools", leaked_loops()
    )


def leaked_loops() -> int:
    from airflow_provider_captaindata.client.transport_async import AsyncTransport

    gc.collect()
    return sum(1 for loop in list(AsyncTransport._pools) if loop.is_closed())


def shrink(scenario: Scenario, emulator: Any) -> tuple[Scenario, str]:
    """The smallest scenario found (one step at a time, a few runs at most) that still fails."""
    runs = 0
    reason = ""
    progress = True
    while progress and runs < SHRINK_RUNS:
        progress = False
        for candidate in smaller(scenario):
            runs += 1
            try:
                run(candidate, emulator)
            except Violation as exc:
                scenario, reason, progress = candidate, str(exc), True
                break
            if runs >= SHRINK_RUNS:
                break
    return scenario, reason


def report(scenario: Scenario, error: Violation, emulator: Any) -> str:
    small, small_reason = shrink(scenario, emulator)
    return (
        f"invariant broken by seed {scenario.seed}: {error}\n"
        f"scenario: {scenario.to_json()}\n"
        f"smallest failing scenario found: {small.to_json()}\n"
        f"  ({small_reason or 'as above'})\n"
        f"replay: CAPTAINDATA_HARNESS_REPLAY='{small.to_json()}' "
        ".venv/bin/python -m pytest tests/invariants -p no:randomly -x -q"
    )


@pytest.mark.usefixtures("airflow_db")
def test_invariants_hold_over_random_scenarios(captaindata_emulator: Any, capsys: Any) -> None:
    scenarios = [Scenario.from_json(REPLAY)] if REPLAY else None
    started = time.monotonic()
    ran = 0
    seed = SEED
    while (scenarios and ran < len(scenarios)) or (
        not scenarios and ran < SCENARIOS and time.monotonic() - started < SECONDS
    ):
        scenario = scenarios[ran] if scenarios else draw(seed)
        seed += 1
        try:
            run(scenario, captaindata_emulator)
        except Violation as exc:
            pytest.fail(report(scenario, exc, captaindata_emulator), pytrace=False)
        ran += 1
    with capsys.disabled():
        print(f"\ninvariant harness: {ran} scenarios from seed {SEED} in {time.monotonic() - started:.0f} s")
    assert ran >= 1


# Scenarios that broke an invariant once, replayed as they are (a drawn seed may change when
# the harness learns to draw more).
BROKE_ONCE = {
    # Airflow before 3.3: the lookup read back to the DAG run's start, which the clear moved
    # past the killed try's messages: two of three were sent again.
    "clear-3h-after-a-killed-try": {
        "kind": "acting",
        "inputs": 3,
        "output": "xcom",
        "kill": 2,
        "kill_after": True,
        "clear": "same",
        "clear_after": 10800.0,
    },
}


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("fields", BROKE_ONCE.values(), ids=BROKE_ONCE.keys())
def test_scenarios_that_broke_an_invariant_once(captaindata_emulator: Any, fields: dict[str, Any]) -> None:
    try:
        run(Scenario(seed=-1, **fields), captaindata_emulator)
    except Violation as exc:
        pytest.fail(str(exc), pytrace=False)
