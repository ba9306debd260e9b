"""``make demo``: every example DAG on real Airflow services, against the local emulator.

Starts the Captain Data emulator and the four Airflow parts (api-server, scheduler,
dag-processor, triggerer; each on 127.0.0.1, state under ``.demo/``), unpauses and triggers the
DAGs of ``dags_examples/`` through the REST API (those scheduled on an asset are not triggered:
the scheduler starts them when another example's results land), follows them (deferrals on the
triggerer are printed as they happen), prints a table of outcomes and the Captain Data tasks'
OpenLineage events (with the provider installed) and stops everything it started, also on
Ctrl-C or an error. ``--keep`` leaves it all up for the UI until Ctrl-C.

Exit code: 0 when every DAG run succeeded, 1 when one did not, 2 when a step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_services import (
    AIRFLOW_HOME,
    DAGS_DIR,
    DEMO_DIR,
    HOST,
    LOG_DIR,
    ROOT,
    AirflowApi,
    StepFailed,
    Supervisor,
    airflow_env,
    free_port,
    log_tail,
    migrate,
    start_airflow,
    start_emulator,
    supervised,
    wait_for_dags,
)

PREFERRED_API_PORT = 8080
POLL_SECONDS = 2.0  # the examples' poll interval here (30 s by default, for real runs)
# Emulated runs long enough to be seen waiting on the triggerer, short enough for a demo.
EMULATOR_SETTINGS = {"v3_pending_seconds": 1.0, "v3_running_seconds": 25.0, "v4_running_seconds": 10.0}
RUNS_TIMEOUT_SECONDS = 420.0
FINAL_STATES = {"success", "failed"}
AWAITING_ASSET = "awaiting asset"
ASSET_GRACE_SECONDS = 60.0  # after the other runs end, how long an awaited DAG may take to start
STEPS = 7
LINEAGE_LOG = DEMO_DIR / "openlineage" / "events.jsonl"
current_step = ["preparing .demo/"]  # named in the message when a step fails


def step(number: int, text: str) -> float:
    current_step[0] = f"step {number}/{STEPS} ({text})"
    print(f"demo: step {number}/{STEPS}: {text}", flush=True)
    return time.monotonic()


@dataclass
class Tracked:
    """One triggered DAG run, and what was seen of its task instances."""

    dag_id: str
    run_id: str
    started: float
    state: str = "queued"
    ended: float | None = None
    deferred_since: dict[str, float] = field(default_factory=dict)  # task key -> first seen deferred
    deferred_seconds: dict[str, float] = field(default_factory=dict)
    rows: Any = None

    @property
    def deferred_total(self) -> float:
        return sum(self.deferred_seconds.values())


def ti_key(ti: dict[str, Any]) -> str:
    return ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")


def trigger_all(api: AirflowApi, dag_ids: list[str]) -> dict[str, Tracked]:
    """Unpause every DAG and trigger those not scheduled on assets; those are awaited: an asset
    event (another example's results landing) starts them."""
    tracked = {}
    for dag_id in dag_ids:
        api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        if api.call("GET", f"/dags/{dag_id}/details").get("asset_expression"):
            tracked[dag_id] = Tracked(dag_id, "", time.monotonic(), state=AWAITING_ASSET)
            print(f"  {dag_id} is scheduled on an asset: not triggered, awaited", flush=True)
            continue
        run = api.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "note": "make demo"})
        tracked[dag_id] = Tracked(dag_id, run["dag_run_id"], time.monotonic())
        print(f"  triggered {dag_id} ({run['dag_run_id']})", flush=True)
    return tracked


def note_asset_runs(items: list[dict[str, Any]], tracked: dict[str, Tracked], stamp: str) -> None:
    """Start following the runs an asset event created for the awaited DAGs."""
    for item in items:
        run = tracked.get(item["dag_id"])
        if run is not None and run.state == AWAITING_ASSET and item.get("run_type") == "asset_triggered":
            run.run_id, run.state, run.started = item["dag_run_id"], "queued", time.monotonic()
            print(f"{stamp} {run.dag_id}: STARTED by an asset event ({run.run_id})", flush=True)


def follow(api: AirflowApi, supervisor: Supervisor, tracked: dict[str, Tracked], t0: float) -> None:
    """Poll every second until every run is final; print deferrals, resumptions and endings."""
    deadline = time.monotonic() + RUNS_TIMEOUT_SECONDS
    last_summary = 0.0
    quiet_since: float | None = None  # when every run but the awaited ones had ended
    by_run = {t.run_id: t for t in tracked.values() if t.run_id}
    while time.monotonic() < deadline:
        supervisor.check()
        now = time.monotonic()
        stamp = f"  [{now - t0:5.1f}s]"
        tis = api.call("GET", "/dags/~/dagRuns/~/taskInstances", params={"limit": 500})["task_instances"]
        states: dict[str, int] = {}
        for ti in tis:
            run = by_run.get(ti["dag_run_id"])
            if run is None:
                continue
            key, state = ti_key(ti), ti.get("state") or "none"
            states[state] = states.get(state, 0) + 1
            if state == "deferred" and key not in run.deferred_since:
                run.deferred_since[key] = now
                trigger = (ti.get("trigger") or {}).get("classpath", "?").rsplit(".", 1)[-1]
                job = ti.get("triggerer_job") or {}
                where = (
                    f"triggerer job {job['id']} on {job.get('hostname')}" if job.get("id") else "triggerer"
                )
                print(f"{stamp} {run.dag_id}.{key} DEFERRED: {trigger} waits on the {where}", flush=True)
            elif state != "deferred" and key in run.deferred_since and key not in run.deferred_seconds:
                run.deferred_seconds[key] = now - run.deferred_since[key]
                print(
                    f"{stamp} {run.dag_id}.{key} resumed from the triggerer after "
                    f"{run.deferred_seconds[key]:.1f} s ({state})",
                    flush=True,
                )
        items = api.call("GET", "/dags/~/dagRuns", params={"limit": 100})["dag_runs"]
        note_asset_runs(items, tracked, stamp)
        by_run = {t.run_id: t for t in tracked.values() if t.run_id}
        for item in items:
            run = by_run.get(item["dag_run_id"])
            if run is not None and run.ended is None and item["state"] in FINAL_STATES:
                run.state, run.ended = item["state"], now
                print(f"{stamp} {run.dag_id}: {run.state.upper()} in {now - run.started:.1f} s", flush=True)
        awaited = [t for t in tracked.values() if t.state == AWAITING_ASSET]
        if all(t.ended is not None for t in tracked.values() if t not in awaited):
            quiet_since = quiet_since or now
            if now - quiet_since > ASSET_GRACE_SECONDS:  # no asset event came: say so, stop
                for run in awaited:
                    run.state, run.ended = "not started", now
            if all(t.ended is not None for t in tracked.values()):
                return
        if now - last_summary >= 10.0:
            last_summary = now
            done = sum(t.ended is not None for t in tracked.values())
            counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            print(f"{stamp} {done}/{len(tracked)} DAG runs done; tasks: {counts}", flush=True)
        time.sleep(1.0)
    late = [t.dag_id for t in tracked.values() if t.ended is None]
    raise StepFailed(
        f"runs not done after {RUNS_TIMEOUT_SECONDS:.0f} s: {', '.join(late)}",
        "the machine may be busy: retry; else read the scheduler and triggerer logs",
        LOG_DIR / "scheduler.log",
    )


def read_rows(api: AirflowApi, run: Tracked) -> Any:
    """The ``rows`` the DAG's last task reported (every example ends with such a summary)."""
    tasks = api.call("GET", f"/dags/{run.dag_id}/tasks")["tasks"]
    leaves = [t["task_id"] for t in tasks if not t.get("downstream_task_ids")]
    total = 0
    for task_id in leaves:
        path = f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        try:
            value = api.call("GET", path, params={"deserialize": True, "stringify": False})["value"]
        except StepFailed:
            return None
        if isinstance(value, dict) and isinstance(value.get("rows"), int):
            total += value["rows"]
    return total


def task_log_errors(path: Path, limit: int = 3) -> str:
    """The last errors and warnings of a task log (JSON lines), with their exceptions."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") not in ("error", "critical", "warning"):
            continue
        text = f"    {entry['level']}: {entry.get('event')}"
        for error in entry.get("error_detail") or []:
            text += f"\n      {error.get('exc_type')}: {error.get('exc_value')}"
        found.append(text)
    return "\n".join(found[-limit:]) or log_tail(path, 10)


def explain_failures(api: AirflowApi, run: Tracked) -> None:
    """Name each failed task and show why, from its log file."""
    tis = api.call("GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances")["task_instances"]
    for ti in tis:
        if ti.get("state") not in ("failed", "upstream_failed"):
            continue
        print(f"  {run.dag_id}.{ti_key(ti)}: {ti['state']}")
        folder = (
            AIRFLOW_HOME
            / "logs"
            / f"dag_id={run.dag_id}"
            / f"run_id={run.run_id}"
            / f"task_id={ti['task_id']}"
        )
        if ti.get("map_index", -1) >= 0:
            folder /= f"map_index={ti['map_index']}"
        log = folder / f"attempt={ti['try_number']}.log"
        if ti["state"] == "failed" and log.exists():
            print(f"  from {log.relative_to(ROOT)}:\n{task_log_errors(log)}")


def print_table(runs: list[Tracked]) -> None:
    header = f"{'DAG':<34} {'state':<8} {'rows':>5}  {'deferred (triggerer)':<22} {'time':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for run in runs:
        deferred = (
            f"{len(run.deferred_seconds)} task(s), {run.deferred_total:.1f} s"
            if run.deferred_seconds
            else "-"
        )
        took = f"{run.ended - run.started:.1f} s" if run.ended else "-"
        rows = "-" if run.rows is None else str(run.rows)
        print(f"{run.dag_id:<34} {run.state:<8} {rows:>5}  {deferred:<22} {took:>7}")
    print()


def lineage_env(log: Path) -> dict[str, str]:
    """With the OpenLineage provider installed (the openlineage extra), its events go to a file."""
    if importlib.util.find_spec("airflow.providers.openlineage") is None:
        return {}
    log.parent.mkdir(parents=True, exist_ok=True)
    transport = {"type": "file", "log_file_path": str(log), "append": True}
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "demo",
    }


def print_lineage(log: Path) -> None:
    """One line per Captain Data task of what its last OpenLineage event says it read and wrote."""
    if not log.exists():
        return
    last: dict[str, dict[str, Any]] = {}
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = json.loads(line)
            if event["eventType"] in ("COMPLETE", "FAIL") and any(
                d["namespace"].startswith("captaindata://") for d in event.get("inputs", [])
            ):
                last[event["job"]["name"]] = event
    print(f"demo: OpenLineage events in {log.relative_to(ROOT)}; the Captain Data tasks':")
    for job, event in sorted(last.items()):
        inputs = ", ".join(d["name"] for d in event["inputs"])
        outputs = ", ".join(f"{d['namespace']}:{d['name']}" for d in event.get("outputs", [])) or "XCom"
        run = event["run"]["facets"].get("externalQuery", {}).get("externalQueryId", "live call")
        print(f"  {job}: {event['eventType']}, {inputs} -> {outputs} (run {run})")


def prepare_demo_dir() -> None:
    pid_file = DEMO_DIR / "demo.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError, ValueError):
            pass
        else:
            if pid != os.getpid():
                raise StepFailed(f"another demo is running (pid {pid})", f"stop it first: kill {pid}")
    for name in ("airflow", "logs", "results", "callbacks", "openlineage"):
        shutil.rmtree(DEMO_DIR / name, ignore_errors=True)
    DEMO_DIR.mkdir(exist_ok=True)
    pid_file.write_text(str(os.getpid()))


def run_demo(supervisor: Supervisor, keep: bool) -> int:
    """Steps 1 to 7 and the table; 0 if every DAG run succeeded, else 1."""
    t = step(1, "starting the Captain Data emulator")
    emulator_url = start_emulator(supervisor, EMULATOR_SETTINGS)
    print(f"  {emulator_url} ({time.monotonic() - t:.1f} s)")

    api_port = free_port(PREFERRED_API_PORT)
    if api_port != PREFERRED_API_PORT:
        print(f"  port {PREFERRED_API_PORT} is taken: the API server uses {api_port}")
    api_url = f"http://{HOST}:{api_port}"
    connection = {
        "conn_type": "captaindata",
        "description": "The local Captain Data emulator (make demo)",
        "host": emulator_url,
        "password": "cd_emulator_key",  # the emulator's default key, not a real one
        "extra": {
            "project_uid": "5f0c2a8e-7b1d-4c3e-9a6f-1d2e3f4a5b6c",  # the emulator's default workspace
            "rate_limit_per_second": 10,
            # Async results: the API server's callback receiver (provider plugin) stores the pages.
            "callback_base_url": f"{api_url}/captaindata",
            "callback_secret": secrets.token_urlsafe(32),
            "callback_storage": (DEMO_DIR / "callbacks").as_uri(),
        },
    }
    warehouse = DEMO_DIR / "results" / "warehouse.db"
    # SQLite makes the file, not its folder; the examples' results writers make theirs only as
    # their runs end, often after the v1 example's load task has run.
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    env = airflow_env(
        api_port,
        connection,
        {
            "CAPTAINDATA_EXAMPLE_POLL_SECONDS": str(POLL_SECONDS),
            "CAPTAINDATA_EXAMPLE_OUTPUT_BASE": (DEMO_DIR / "results").as_uri(),
            # The warehouse table of the v1 example (captaindata_v1_to_sql).
            "AIRFLOW_CONN_CAPTAINDATA_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
            **lineage_env(LINEAGE_LOG),
        },
    )

    t = step(2, f"creating the Airflow database ({AIRFLOW_HOME.relative_to(ROOT)}/airflow.db)")
    migrate(env)
    print(f"  done ({time.monotonic() - t:.1f} s)")

    step(3, f"starting api-server ({api_url}), scheduler, dag-processor, triggerer")
    start_airflow(supervisor, env, api_port)

    t = step(4, "waiting for the API server")
    api = AirflowApi(api_url)
    api.wait_until_up(supervisor)
    print(f"  up ({time.monotonic() - t:.1f} s)")

    dag_ids = sorted(p.stem for p in DAGS_DIR.glob("captaindata_*.py"))
    t = step(5, f"waiting for the dag-processor to parse {len(dag_ids)} example DAGs")
    wait_for_dags(api, supervisor, dag_ids)
    print(f"  parsed ({time.monotonic() - t:.1f} s)")

    step(6, "unpausing and triggering them through the REST API")
    tracked = trigger_all(api, dag_ids)

    t0 = step(7, "following the runs (deferrals are printed as the triggerer takes them)")
    follow(api, supervisor, tracked, t0)

    runs = list(tracked.values())
    for run in runs:
        run.rows = read_rows(api, run)
    print_table(runs)
    failed = [r for r in runs if r.state != "success"]
    for run in failed:
        if run.run_id:
            explain_failures(api, run)
    print_lineage(LINEAGE_LOG)
    deferred = sum(len(r.deferred_seconds) for r in runs)
    if deferred:
        print(f"demo: {deferred} task(s) waited on the real triggerer instead of holding a worker slot.")
    else:
        print("demo: no task was seen deferred (they may have been too quick); see .demo/logs/triggerer.log")
    print(f"demo: UI at {api_url}/ (a task's Details tab shows the 'Captain Data run' link)")
    print(f"demo: logs in {LOG_DIR.relative_to(ROOT)}/, task logs in {AIRFLOW_HOME.relative_to(ROOT)}/logs/")
    if not keep:
        print("demo: `make demo KEEP=1` keeps it running to look around.")
    api.close()
    return 1 if failed else 0


def keep_up(supervisor: Supervisor) -> None:
    print("demo: --keep: everything stays up; press Ctrl-C to stop it.", flush=True)
    current_step[0] = "keeping the services up (--keep)"
    while True:
        supervisor.check()
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep everything up until Ctrl-C")
    args = parser.parse_args(argv)
    started = time.monotonic()
    code: int | None = None
    try:
        prepare_demo_dir()
        with supervised() as supervisor:
            code = run_demo(supervisor, args.keep)
            if args.keep:
                keep_up(supervisor)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped.")
        code = 130 if code is None else code
    except StepFailed as exc:
        exc.report(f"\ndemo: FAILED at {current_step[0]}: ")
        code = 2
    except Exception:
        print(f"\ndemo: FAILED at {current_step[0]} with an unexpected error:", file=sys.stderr)
        raise
    finally:
        (DEMO_DIR / "demo.pid").unlink(missing_ok=True)
    print(f"demo: done in {time.monotonic() - started:.0f} s (exit code {code})")
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
