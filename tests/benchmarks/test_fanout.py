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
from tests.benchmarks.harness import BENCH_DIR, STRICT, Recorder, Row, child_argv, child_env, run_child

INPUTS = int(os.environ.get("BENCH_FANOUT_INPUTS", "1000"))
RATE = 20.0
LATENCY = 0.15
ACTION = "linkedin-extract-people"


def _live_calls(emulator: Any) -> list[dict[str, Any]]:
    return emulator.requests(method="POST", path=f"/v4/actions/{ACTION}/run/live*")


def test_live_fanout_at_rate_limit(recorder: Recorder, emulator: Any, child_home: Path) -> None:
    emulator.configure(rate_limit_per_second=RATE, live_latency_seconds=LATENCY)
    before = len(_live_calls(emulator))
    out = BENCH_DIR / "fanout.jsonl"
    env = child_env(child_home, connection_env(emulator, rate_limit_per_second=RATE))
    result = run_child(
        child_argv("fanout", inputs=INPUTS, action=ACTION, out=str(out)), env, timeout=900
    ).output
    calls = _live_calls(emulator)[before:]
    refused = sum(1 for c in calls if c["status"] == 429)
    failed = int(result["summary"]["failed"])
    ideal = INPUTS / RATE
    ratio = result["wall_s"] / ideal
    out.unlink(missing_ok=True)
    rows = [
        Row(
            "fanout",
            f"wall time, {INPUTS:,} inputs",
            result["wall_s"],
            ideal,
            "s",
            "<= 1.05x ideal",
            ratio <= 1.05,
        ),
        Row("fanout", "429s seen", refused, None, "", "", None),
        Row("fanout", "inputs failed", failed, None, "", "0", failed == 0),
    ]
    details = {
        "inputs": INPUTS,
        "rate_limit_per_second": RATE,
        "live_latency_s": LATENCY,
        "max_concurrency": result["max_concurrency"],
        "ideal_s": ideal,
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
        "calls": len(calls),
        "refused_429": refused,
        "failed": failed,
        "rows_written": result["summary"].get("rows"),
        "first_errors": result["input_errors"][:5],
    }
    recorder.section("fanout", details, rows)
    assert len(calls) - refused >= INPUTS - failed
    if STRICT:
        assert all(r.met is not False for r in rows), [r.metric for r in rows if r.met is False]
