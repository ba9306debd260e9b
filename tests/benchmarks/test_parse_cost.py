"""1. DAG-parse cost: what importing the provider adds to a fresh interpreter.

Each case is a fresh interpreter (a child with its own AIRFLOW_HOME) that imports Airflow's
authoring module, then the modules under test. Two figures per case:

* **added** (the one judged): time, CPU and peak-RSS growth between "Airflow imported" and
  "modules imported", read inside the child. This is what the DAG processor pays per parse
  that imports the provider, and it is not blurred by the ~2.5 s interpreter start.
* **whole interpreter**: spawn-to-exit wall time minus that of an interpreter importing only
  Airflow, medians of the same runs: the literal "fresh interpreter minus fresh interpreter"
  cross-check, much noisier.

Cases run interleaved (A B C A B C ...) so load from other processes spreads evenly, after
one warm-up round that fills the bytecode cache.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from tests.benchmarks.harness import STRICT, Recorder, Row, child_env, median, run_child

REPEATS = int(os.environ.get("BENCH_PARSE_REPEATS", "7"))
TARGET_MS = 25.0

PROVIDER_MODULES = (
    "airflow_provider_captaindata.operators.workflows",
    "airflow_provider_captaindata.operators.actions",
    "airflow_provider_captaindata.sensors.runs",
    "airflow_provider_captaindata.hooks.captaindata",
)
# The reference: the standard provider's counterparts (two operators, a sensor, a hook).
STANDARD_MODULES = (
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.operators.bash",
    "airflow.providers.standard.sensors.time_delta",
    "airflow.providers.standard.hooks.subprocess",
)

# The child: only the standard library before the measured imports. VmRSS is what stays held,
# VmHWM the peak (not ru_maxrss, which Linux keeps across execve: it would be pytest's size).
SNIPPET = """
import sys, time
def mark():
    with open("/proc/self/status") as status:
        kb = {{line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}}
    return time.perf_counter(), time.process_time(), kb["VmHWM"], kb["VmRSS"]
t0 = mark()
import {base}
t1 = mark()
for name in {modules!r}:
    __import__(name)
t2 = mark()
import json
print(json.dumps({{"base_s": t1[0] - t0[0], "added_s": t2[0] - t1[0], "added_cpu_s": t2[1] - t1[1],
                  "base_rss_kb": t1[3], "added_rss_kb": t2[3] - t1[3], "added_peak_rss_kb": t2[2] - t1[2],
                  "peak_rss_kb": t2[2],
                  "modules": len(sys.modules)}}))
"""


def _base_module() -> str:
    from airflow import __version__

    return "airflow.sdk" if int(__version__.split(".")[0]) >= 3 else "airflow.models"


def _run(home: Path, base: str, modules: tuple[str, ...]) -> dict[str, Any]:
    import sys

    result = run_child([sys.executable, "-c", SNIPPET.format(base=base, modules=modules)], child_env(home))
    return {**result.output, "wall_s": result.wall_s}


def test_dag_parse_cost(recorder: Recorder, child_home: Path) -> None:
    base = _base_module()
    cases: dict[str, tuple[str, ...]] = {"airflow_only": (), "captaindata": PROVIDER_MODULES}
    if importlib.util.find_spec("airflow.providers.standard") is not None:
        cases["standard_provider"] = STANDARD_MODULES
    for modules in cases.values():  # warm-up: fills the bytecode cache, not measured
        _run(child_home, base, modules)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    for _ in range(REPEATS):
        for name, modules in cases.items():
            runs[name].append(_run(child_home, base, modules))

    def med(case: str, key: str, scale: float = 1.0) -> float:
        return median([r[key] for r in runs[case]]) * scale

    whole_base = med("airflow_only", "wall_s", 1000)
    figures: dict[str, Any] = {
        "base_module": base,
        "repeats": REPEATS,
        "airflow_only": {
            "import_ms": med("airflow_only", "base_s", 1000),
            "interpreter_wall_ms": whole_base,
            "rss_mb": med("airflow_only", "base_rss_kb") / 1024,
            "peak_rss_mb": med("airflow_only", "peak_rss_kb") / 1024,
        },
    }
    for name, modules in cases.items():
        if name == "airflow_only":
            continue
        figures[name] = {
            "modules": list(modules),
            "added_ms": med(name, "added_s", 1000),
            "added_cpu_ms": med(name, "added_cpu_s", 1000),
            "added_rss_kb": med(name, "added_rss_kb"),
            "added_peak_rss_kb": med(name, "added_peak_rss_kb"),
            "added_ms_all_runs": [round(r["added_s"] * 1000, 2) for r in runs[name]],
            "interpreter_wall_ms": med(name, "wall_s", 1000),
            "interpreter_minus_airflow_only_ms": med(name, "wall_s", 1000) - whole_base,
        }
    ours = figures["captaindata"]
    met = ours["added_ms"] <= TARGET_MS
    rows = [
        Row(
            "parse", f"{base} alone: import time", figures["airflow_only"]["import_ms"], None, "ms", "", None
        ),
        Row(
            "parse",
            "captaindata: import time added",
            ours["added_ms"],
            None,
            "ms",
            f"<= {TARGET_MS:.0f} ms",
            met,
        ),
        Row("parse", "captaindata: CPU added", ours["added_cpu_ms"], None, "ms", "", None),
        Row("parse", "captaindata: RSS added", ours["added_rss_kb"], None, "KB", "", None),
        Row(
            "parse",
            "captaindata: interpreter - airflow",
            ours["interpreter_minus_airflow_only_ms"],
            None,
            "ms",
            "(noisy cross-check)",
            None,
        ),
    ]
    if "standard_provider" in figures:
        std = figures["standard_provider"]
        rows += [
            Row(
                "parse",
                "standard provider: import time added",
                std["added_ms"],
                None,
                "ms",
                "(reference)",
                None,
            ),
            Row(
                "parse",
                "standard provider: RSS added",
                std["added_rss_kb"],
                None,
                "KB",
                "(reference)",
                None,
            ),
        ]
    recorder.section("parse", figures, rows)
    if STRICT:
        assert met, f"importing the provider adds {ours['added_ms']:.1f} ms (target {TARGET_MS} ms)"
