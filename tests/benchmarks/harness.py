"""Shared pieces of the benchmarks: child processes, statistics, the machine, the results file.

Every figure that is compared with a baseline comes from a fresh child process (see
``child.py``) so that peak memory is per case and the emulator's CPU is never counted in
the client's: the emulator runs in its own process too (``conftest.py``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
RESULTS_FILE = Path(os.environ.get("BENCH_RESULTS", BENCH_DIR / "results.json"))
CHILD = Path(__file__).with_name("child.py")
# Targets missed are reported, not failed, unless asked: the figures are noisy on a shared
# machine and a red ``make bench`` should mean the harness or the provider broke.
STRICT = os.environ.get("BENCH_STRICT", "") not in ("", "0")


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): no interpolation, so p99 is a value we saw."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def child_env(airflow_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: a private AIRFLOW_HOME and cached bytecode.

    The sessions here set PYTHONDONTWRITEBYTECODE, so every fresh interpreter would compile
    Airflow from source (about 4 s). A real installation has its .pyc files, so the children
    keep a bytecode cache under .bench/ (not in the venv or the source tree).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(airflow_home / "dags"),
            "PYTHONPYCACHEPREFIX": str(BENCH_DIR / "pycache"),
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra or {})
    return env


@dataclass
class ChildResult:
    """What a child printed (its last stdout line, JSON) and how long it took, spawn to exit.

    Children report their own CPU and peak RSS (``getrusage(RUSAGE_SELF)``): the parent's
    RUSAGE_CHILDREN keeps the largest child's peak, which would hide a smaller case.
    """

    output: dict[str, Any]
    wall_s: float
    stderr: str = field(repr=False)


def run_child(
    argv: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None, timeout: float = 600.0
) -> ChildResult:
    started = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        env=dict(env),
        cwd=str(cwd or REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        err = proc.stderr
        shown = err if len(err) <= 8000 else f"{err[:3000]}\n[...]\n{err[-5000:]}"
        raise RuntimeError(f"child {' '.join(argv[1:3])} exited {proc.returncode}\n--- stderr ---\n{shown}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"child printed nothing\n--- stderr ---\n{proc.stderr[-4000:]}")
    return ChildResult(output=json.loads(lines[-1]), wall_s=wall, stderr=proc.stderr)


def child_argv(mode: str, **params: Any) -> list[str]:
    """The command line of a child; its parameters go through a file (run lists are long)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"params-{mode}-{os.getpid()}-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(params))
    return [sys.executable, str(CHILD), mode, str(path)]


def machine_info() -> dict[str, Any]:
    """What the figures ran on, including how busy it was."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gb = None
    try:
        from airflow import __version__ as airflow_version
    except ImportError:
        airflow_version = "not installed"
    from airflow_provider_captaindata import __version__ as provider_version

    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "airflow": airflow_version,
        "provider": provider_version,
        "git_commit": _git_commit(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass
class Row:
    """One line of the summary table: a measured figure, its baseline and the target."""

    benchmark: str
    metric: str
    value: float
    baseline: float | None
    unit: str
    target: str
    met: bool | None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Recorder:
    """Collects each benchmark's details and summary rows; written once, at the end."""

    sections: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def section(self, name: str, details: Mapping[str, Any], rows: Sequence[Row]) -> None:
        self.sections[name] = {"details": dict(details), "rows": [_row_json(r) for r in rows]}
        self.rows.extend(rows)
        print(f"\n[{name}]")
        for row in rows:
            print("  " + format_row(row, with_benchmark=False))

    def write(self, started: float, machine: dict[str, Any]) -> Path:
        """Merge into the results file: running one benchmark keeps the others' last figures."""
        previous: dict[str, Any] = {}
        if RESULTS_FILE.exists():
            try:
                previous = json.loads(RESULTS_FILE.read_text())
            except ValueError:
                previous = {}
        benchmarks = dict(previous.get("benchmarks") or {})
        for name, data in self.sections.items():
            benchmarks[name] = {**data, "machine": machine, "finished_at": _iso(time.time())}
        document = {
            "started_at": _iso(started),
            "finished_at": _iso(time.time()),
            "machine": machine,
            "benchmarks": benchmarks,
        }
        RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_FILE.write_text(json.dumps(document, indent=2) + "\n")
        return RESULTS_FILE


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "metric": row.metric,
        "value": row.value,
        "baseline": row.baseline,
        "ratio": row.ratio,
        "unit": row.unit,
        "target": row.target,
        "met": row.met,
    }


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_row(row: Row, *, with_benchmark: bool = True) -> str:
    verdict = {True: "met", False: "MISSED", None: ""}[row.met]
    ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
    head = f"{row.benchmark:<10} " if with_benchmark else ""
    return (
        f"{head}{row.metric:<40} {_num(row.value):>10} {row.unit:<8} baseline {_num(row.baseline):>10}"
        f"  ratio {ratio:>6}  target {row.target:<22} {verdict}"
    )


def live_calls(emulator: Any, action: str) -> list[dict[str, Any]]:
    """The live calls of ``action`` in the emulator's request log (first pages and next pages)."""
    return emulator.requests(method="POST", path=f"/v4/actions/{action}/run/live*")


def paced_run(
    benchmark: str,
    result: Mapping[str, Any],
    calls: Sequence[Mapping[str, Any]],
    *,
    inputs: int,
    rate: float,
    wall_metric: str,
    metric_prefix: str = "",
) -> tuple[list[Row], dict[str, Any]]:
    """The rows and details of ``inputs`` sent through a rate limit by an operator in a child
    (``result``), with the live ``calls`` the emulator logged: the wall time against the ideal
    (inputs / rate), the 429s, the inputs that failed. The details are the measured part: each
    benchmark puts its own setting before them."""
    refused = sum(1 for c in calls if c["status"] == 429)
    failed = int(result["summary"]["failed"])
    ideal = inputs / rate
    rows = [
        Row(
            benchmark,
            wall_metric,
            result["wall_s"],
            ideal,
            "s",
            "<= 1.05x ideal",
            result["wall_s"] / ideal <= 1.05,
        ),
        Row(benchmark, f"{metric_prefix}429s seen", refused, None, "", "", None),
        Row(benchmark, f"{metric_prefix}inputs failed", failed, None, "", "0", failed == 0),
    ]
    details = {
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
    return rows, details


def beside_baseline(
    benchmark: str,
    cases: Mapping[tuple[str, int], Mapping[str, Any]],
    sizes: Sequence[int],
    key: str,
    metric: str,
    unit: str,
    side: str = "provider",
) -> list[Row]:
    """One row per size: figure ``key`` of ``side``'s case beside the baseline's, no target;
    ``metric`` names the size as ``{size:,}``."""
    return [
        Row(
            benchmark,
            metric.format(size=size),
            cases[(side, size)][key],
            cases[("baseline", size)][key],
            unit,
            "",
            None,
        )
        for size in sizes
    ]


def check_targets(rows: Sequence[Row]) -> None:
    """Fail on a missed target only when asked (``STRICT``)."""
    if STRICT:
        assert all(r.met is not False for r in rows), [r.metric for r in rows if r.met is False]
