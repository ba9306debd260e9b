"""3. Results throughput and memory: a finished v3 run read page by page into a JSON Lines file.

* **provider**: the workflow operator's own ``collect()`` (``hook.iter_workflow_results`` into
  the ``JsonLinesFile`` sink on a ``file://`` path through ObjectStoragePath);
* **baseline**: ``requests`` + ``json``, following ``paging.next`` and writing JSON lines
  with the same ``json.dumps`` settings.

Each case (side x 10,000 / 100,000 rows, 1,000 rows a page) is a fresh child, so its peak
RSS is its own. "A page's worth" of memory is what reading one page costs in this process
(the response text plus the parsed rows, by tracemalloc), shown beside its size on the wire.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any

from tests.benchmarks.conftest import connection_env
from tests.benchmarks.harness import (
    BENCH_DIR,
    Recorder,
    Row,
    beside_baseline,
    check_targets,
    child_argv,
    child_env,
    run_child,
)
from tests.benchmarks.workloads import finished_v3_run, v3_access, v3_workflow

PAGE_SIZE = 1_000
SIZES = tuple(int(s) for s in os.environ.get("BENCH_RESULT_ROWS", "10000,100000").split(","))


def _page_cost(access: dict[str, Any], run_uid: str) -> tuple[int, int]:
    """Bytes of one page on the wire, and bytes it takes to hold it read and parsed."""
    import json

    import requests

    url = f"{access['v3_base_url']}/jobs/{run_uid}/results"
    response = requests.get(url, headers=access["headers"], timeout=30)
    response.raise_for_status()
    wire = len(response.content)
    gc.collect()
    tracemalloc.start()
    try:
        text = response.content.decode("utf-8")
        page = json.loads(text)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page["results"]) == PAGE_SIZE
    del text, page
    return wire, held


def test_results_throughput_and_memory(recorder: Recorder, emulator: Any, child_home: Path) -> None:
    access = v3_access()
    workflow_uid, _ = v3_workflow()
    env = child_env(child_home, connection_env(emulator))
    out_dir = BENCH_DIR / "results-out"
    out_dir.mkdir(parents=True, exist_ok=True)
    cases: dict[tuple[str, int], dict[str, Any]] = {}
    page_wire = page_held = 0
    for rows in SIZES:
        run_uid = finished_v3_run(emulator, rows, PAGE_SIZE)
        if not page_wire:
            page_wire, page_held = _page_cost(access, run_uid)
        for side in ("baseline", "provider"):
            out = out_dir / f"{side}-{rows}.jsonl"
            params = {
                "side": side,
                "rows": rows,
                "run_uid": run_uid,
                "workflow_uid": workflow_uid,
                "out": str(out),
                **access,
            }
            result = run_child(child_argv("results", **params), env).output
            assert result["rows"] == rows, (side, rows, result["rows"])
            cases[(side, rows)] = {
                **result,
                "rows_per_s": rows / result["wall_s"],
                "client_cpu_ms_per_1000_rows": result["cpu_s"] / rows * 1000 * 1000,
                "peak_rss_mb": result["peak_rss"] / 2**20,
                "growth_mb": (result["peak_rss"] - result["rss_before"]) / 2**20,
            }
            out.unlink()
    # Both sides must have written the same bytes (same rows, same JSON settings).
    for rows in SIZES:
        assert cases[("provider", rows)]["file_bytes"] == cases[("baseline", rows)]["file_bytes"]

    small, large = min(SIZES), max(SIZES)
    ours_small, ours_large = cases[("provider", small)], cases[("provider", large)]
    memory_growth = ours_large["peak_rss"] - ours_small["peak_rss"]
    rows_out: list[Row] = []
    for rows in SIZES:
        ours, base = cases[("provider", rows)], cases[("baseline", rows)]
        rate_ratio = ours["rows_per_s"] / base["rows_per_s"]
        rows_out.append(
            Row(
                "results",
                f"rows/s at {rows:,} rows",
                ours["rows_per_s"],
                base["rows_per_s"],
                "rows/s",
                ">= 0.8x baseline",
                rate_ratio >= 0.8,
            )
        )
    # The emulator makes every row on request, so the wall rate is partly its own; the
    # client's CPU per row is what the provider controls.
    rows_out += beside_baseline(
        "results", cases, SIZES, "client_cpu_ms_per_1000_rows", "client CPU per 1,000 rows at {size:,}", "ms"
    )
    rows_out += beside_baseline("results", cases, SIZES, "peak_rss_mb", "peak RSS at {size:,} rows", "MB")
    rows_out.append(
        Row(
            "results",
            f"peak RSS {large:,} minus {small:,} rows",
            memory_growth / 2**20,
            None,
            "MB",
            f"<= 2 pages ({2 * page_held / 2**20:.1f} MB)",
            memory_growth <= 2 * page_held,
        )
    )
    details = {
        "page_size": PAGE_SIZE,
        "page_wire_bytes": page_wire,
        "page_in_memory_bytes": page_held,
        "cases": {f"{side}_{rows}": figures for (side, rows), figures in cases.items()},
    }
    recorder.section("results", details, rows_out)
    check_targets(rows_out)
