"""6. The v1 API: enrichment at the plan's rate, and a search read beside a bare loop.

* **enrich**: 10,000 ``GET /v1/people/enrich`` through ``CaptainDataEnrichPeopleOperator``
  (its default ``max_concurrency``), the emulator enforcing the Titanium plan (40 requests/s,
  nothing queued: over it, 429) and the connection's ``rate_limit_per_second`` at 40. The
  baseline is the ideal, inputs / rate; 429s are read from the emulator's request log.
* **search**: 2,500 results (100 pages of 25) of ``GET /v1/people/search`` read by the v1
  client (cursor pages, origin check, page-loop guard, rate gate, retry policy) in a process
  without Airflow, as a script uses it, and written as JSON lines, beside a bare ``requests``
  loop following the same ``X-Pagination-Next`` headers and writing the same lines the same
  way; the client's peak memory at 250 and at 2,500 results (it should not grow with the
  results); and, for information, the whole ``CaptainDataSearchPeopleOperator`` task
  (connection, ``GET /quotas`` before and after, a record per page beside the file). Each case
  is a fresh child process.
"""

from __future__ import annotations

import os
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
    paced_run,
    run_child,
)

ENRICH_INPUTS = int(os.environ.get("BENCH_V1_ENRICH_INPUTS", "10000"))
PLAN, RATE = "Titanium", 40.0
SEARCH_SIZES = tuple(int(s) for s in os.environ.get("BENCH_V1_SEARCH_RESULTS", "250,2500").split(","))
QUERY = '(keywords:"data engineer")'
REPEATS = int(os.environ.get("BENCH_V1_REPEATS", "3"))
FLAT_MEMORY_BYTES = 2 * 2**20  # peak RSS may differ by allocator noise, never by the results


def test_v1_enrichment_at_the_plan_rate(recorder: Recorder, emulator: Any, child_home: Path) -> None:
    emulator.configure(v1_plan=PLAN)
    before = len(emulator.requests(method="GET", path="/v1/people/enrich"))
    out = BENCH_DIR / "v1-enrich.jsonl"
    env = child_env(child_home, connection_env(emulator, api_version="v1", rate_limit_per_second=RATE))
    try:
        result = run_child(
            child_argv("v1_enrich", inputs=ENRICH_INPUTS, out=str(out)), env, timeout=1800
        ).output
    finally:
        emulator.configure(v1_plan=None)
    calls = emulator.requests(method="GET", path="/v1/people/enrich")[before:]
    out.unlink(missing_ok=True)
    rows, measured = paced_run(
        "v1",
        result,
        calls,
        inputs=ENRICH_INPUTS,
        rate=RATE,
        wall_metric=f"enrich wall time, {ENRICH_INPUTS:,} inputs at {RATE:g}/s",
        metric_prefix="enrich ",
    )
    details = {"inputs": ENRICH_INPUTS, "plan": PLAN, "rate_limit_per_second": RATE, **measured}
    recorder.section("v1-enrich", details, rows)
    assert result["summary"]["rows"] == ENRICH_INPUTS - measured["failed"]
    check_targets(rows)


def test_v1_search_read_beside_a_bare_loop(recorder: Recorder, emulator: Any, child_home: Path) -> None:
    emulator.configure(v1_search_total_results=max(SEARCH_SIZES), v1_page_size=25, v1_plan=None)
    conn = connection_env(emulator, api_version="v1", rate_limit_per_second=1000)
    env = child_env(child_home, conn)
    access = {"v1_base_url": emulator.v1_url, "headers": {"X-API-Key": emulator.api_key}}
    out_dir = BENCH_DIR / "v1-search-out"
    out_dir.mkdir(parents=True, exist_ok=True)
    cases: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        for results in SEARCH_SIZES:
            for side in ("baseline", "provider", "operator"):
                out = out_dir / f"{side}-{results}.jsonl"
                params = {"side": side, "results": results, "query": QUERY, "out": str(out), **access}
                # The median of REPEATS fresh children: a shared machine's noise is larger than
                # the difference measured.
                runs = [run_child(child_argv("v1_search", **params), env).output for _ in range(REPEATS)]
                figures = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
                figures["wall_s_runs"] = [r["wall_s"] for r in runs]
                assert figures["rows"] == results, (side, results, figures["rows"])
                figures["file_bytes"] = out.stat().st_size
                figures["results_per_s"] = results / figures["wall_s"]
                figures["peak_rss_mb"] = figures["peak_rss"] / 2**20
                cases[(side, results)] = figures
                out.unlink()
    finally:
        emulator.configure(v1_search_total_results=60)
    for results in SEARCH_SIZES:  # the same records, written the same way
        assert cases[("provider", results)]["file_bytes"] == cases[("baseline", results)]["file_bytes"]
        assert cases[("operator", results)]["file_bytes"] == cases[("baseline", results)]["file_bytes"]
    small, large = min(SEARCH_SIZES), max(SEARCH_SIZES)
    growth = cases[("provider", large)]["peak_rss"] - cases[("provider", small)]["peak_rss"]
    rows: list[Row] = []
    for results in SEARCH_SIZES:
        ours, base = cases[("provider", results)], cases[("baseline", results)]
        ratio = ours["results_per_s"] / base["results_per_s"]
        target = ">= 0.9x baseline" if results == large else ""
        met = ratio >= 0.9 if results == large else None
        rows.append(
            Row("v1", f"search results/s at {results:,}", ours["results_per_s"], base["results_per_s"],
                "results/s", target, met)
        )  # fmt: skip
    rows += beside_baseline("v1", cases, SEARCH_SIZES, "peak_rss_mb", "search peak RSS at {size:,}", "MB")
    rows += beside_baseline(
        "v1",
        cases,
        SEARCH_SIZES,
        "results_per_s",
        "search operator task results/s at {size:,}",
        "results/s",
        side="operator",
    )
    rows.append(Row("v1", f"search peak RSS {large:,} minus {small:,} results", growth / 2**20, None, "MB",
                    f"<= {FLAT_MEMORY_BYTES / 2**20:g} MB (flat)", growth <= FLAT_MEMORY_BYTES))  # fmt: skip
    details = {
        "page_size": 25,
        "cases": {f"{side}_{results}": figures for (side, results), figures in cases.items()},
    }
    recorder.section("v1-search", details, rows)
    check_targets(rows)
