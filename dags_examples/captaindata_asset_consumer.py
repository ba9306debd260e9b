"""Run when Captain Data results land: a DAG scheduled on the Asset ``captaindata_asset_producer``
publishes.

The triggering asset event's ``extra`` says which Captain Data run wrote the file and how many
rows it holds (``{run_uid, api_version, workflow_uid, rows, path}``), so the load can check it
read them all. Triggered by hand (or by ``dag.test()``), there is no event: it reads the file
the Asset names.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import ObjectStoragePath, dag, get_current_context, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.io.path import ObjectStoragePath
    from airflow.operators.python import get_current_context

from airflow_provider_captaindata.assets import captaindata_asset

OUTPUT_BASE = os.environ.get("CAPTAINDATA_EXAMPLE_OUTPUT_BASE", "file:///tmp/captaindata-examples")
PEOPLE = captaindata_asset(f"{OUTPUT_BASE}/captaindata_assets/people.jsonl")


@dag(
    dag_id="captaindata_asset_consumer",
    schedule=[PEOPLE],  # runs after every asset event of PEOPLE
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "assets"],
)
def captaindata_asset_consumer() -> None:
    @task
    def load_people() -> dict[str, Any]:
        context = get_current_context()
        # Airflow 3 names it triggering_asset_events, Airflow 2.11 triggering_dataset_events.
        triggering = context.get("triggering_asset_events") or context.get("triggering_dataset_events")
        events = [event for per_asset in (triggering or {}).values() for event in per_asset]
        extra = dict(events[-1].extra or {}) if events else {}
        path = ObjectStoragePath(extra.get("path") or PEOPLE.uri)
        with path.open("r") as lines:
            # readline, not "for line in lines": Airflow 2.11's file wrapper is not iterable.
            rows = sum(1 for _ in iter(lines.readline, ""))
        if extra and rows != extra["rows"]:
            raise ValueError(f"{path} has {rows} rows, run {extra['run_uid']} wrote {extra['rows']}")
        run_uid = extra.get("run_uid") or "(triggered by hand)"
        print(f"{rows} rows from Captain Data run {run_uid} in {path}")
        return {"rows": rows, "run_uid": run_uid, "path": str(path)}

    load_people()


captaindata_asset_consumer()
