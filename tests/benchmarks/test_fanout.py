"""4. Live fan-out at the plan's rate limit.

1,000 inputs through the action operator's live fan-out (``execute()`` with ``inputs``, its
default ``max_concurrency``), the connection's ``rate_limit_per_second`` set to the
emulator's limit of 20 requests/s and each live call taking 0.15 s on the emulator. The
baseline is the ideal: inputs / rate. 429s are read from the emulator's request log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.benchmarks.conftest import connection_env
from tests.benchmarks.harness import (
    BENCH_DIR,
    Recorder,
    check_targets,
    child_argv,
    child_env,
    live_calls,
    paced_run,
    run_child,
)

INPUTS = int(os.environ.get("BENCH_FANOUT_INPUTS", "1000"))
RATE = 20.0
LATENCY = 0.15
ACTION = "linkedin-extract-people"


def test_live_fanout_at_rate_limit(recorder: Recorder, emulator: Any, child_home: Path) -> None:
    emulator.configure(rate_limit_per_second=RATE, live_latency_seconds=LATENCY)
    before = len(live_calls(emulator, ACTION))
    out = BENCH_DIR / "fanout.jsonl"
    env = child_env(child_home, connection_env(emulator, rate_limit_per_second=RATE))
    result = run_child(
        child_argv("fanout", inputs=INPUTS, action=ACTION, out=str(out)), env, timeout=900
    ).output
    calls = live_calls(emulator, ACTION)[before:]
    out.unlink(missing_ok=True)
    rows, measured = paced_run(
        "fanout", result, calls, inputs=INPUTS, rate=RATE, wall_metric=f"wall time, {INPUTS:,} inputs"
    )
    details = {"inputs": INPUTS, "rate_limit_per_second": RATE, "live_latency_s": LATENCY, **measured}
    recorder.section("fanout", details, rows)
    assert len(calls) - measured["refused_429"] >= INPUTS - measured["failed"]
    check_targets(rows)
