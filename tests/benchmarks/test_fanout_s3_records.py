"""5. Acting live fan-out with its per-input records beside an ``s3://`` output_path.

2,000 inputs of ``linkedin-message-profile`` (an action with effects: each input is recorded
``sending`` before its call and ``done`` after it) through the action operator's live fan-out
(``execute()`` with ``inputs``, its default ``max_concurrency``), with no task_state_store
(Airflow before 3.3): the records are objects beside ``output_path`` in SeaweedFS S3, as in the
tests. The connection's ``rate_limit_per_second`` and the emulator's limit are 40 requests/s
(the fastest plan) and each live call takes 0.1 s on the emulator. The baseline is the ideal:
inputs / rate; the target is 1.05x it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from tests.benchmarks.conftest import connection_env
from tests.benchmarks.harness import (
    Recorder,
    check_targets,
    child_argv,
    child_env,
    live_calls,
    paced_run,
    run_child,
)

INPUTS = int(os.environ.get("BENCH_FANOUT_S3_INPUTS", "2000"))
RATE = 40.0
LATENCY = 0.1
ACTION = "linkedin-message-profile"


def test_acting_fanout_with_s3_records_at_rate_limit(
    recorder: Recorder, emulator: Any, child_home: Path, s3_server: Any
) -> None:
    emulator.configure(rate_limit_per_second=RATE, live_latency_seconds=LATENCY)
    before = len(live_calls(emulator, ACTION))
    output_path = s3_server.uri(f"bench-{uuid.uuid4().hex[:8]}/messages.jsonl")
    env = child_env(
        child_home, {**connection_env(emulator, rate_limit_per_second=RATE), **s3_server.environment()}
    )
    result = run_child(
        child_argv("fanout", inputs=INPUTS, action=ACTION, out="", output_path=output_path), env, timeout=900
    ).output
    calls = live_calls(emulator, ACTION)[before:]
    rows, measured = paced_run(
        "fanout_s3_records",
        result,
        calls,
        inputs=INPUTS,
        rate=RATE,
        wall_metric=f"wall time, {INPUTS:,} acting inputs",
    )
    details = {
        "inputs": INPUTS,
        "action": ACTION,
        "records": "beside the s3:// output_path (SeaweedFS)",
        "rate_limit_per_second": RATE,
        "live_latency_s": LATENCY,
        **measured,
    }
    recorder.section("fanout_s3_records", details, rows)
    # Each acting input was sent once: no input lost, none sent twice.
    assert len(calls) - measured["refused_429"] == INPUTS - measured["failed"]
    check_targets(rows)
