"""A DAG that Captain Data starts: it runs each time a run of a v3 workflow finishes.

Whoever started the run (a repeat schedule in Captain Data, someone in its app, another DAG),
``CaptainDataRunFinishedTrigger`` sees it finish on the triggerer and emits one asset event
with the run uid; the scheduler then starts this DAG, whose first task reads that run's
results. Each finished run fires once, across triggerer restarts (Airflow 3.3 keeps the
watermark in the asset state store).

On Airflow 2.11 (no event-driven scheduling) the DAG is manual: pass ``run_uid``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow_provider_captaindata.operators.collect import CaptainDataCollectRunOperator

WORKFLOW_UID = os.environ.get("CAPTAINDATA_EXAMPLE_WORKFLOW_UID", "e5384e86-64ce-50b8-945d-903f83098906")
POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "60"))
CONN_ID = "captaindata_default"

try:  # Airflow 3
    from airflow.sdk import Asset, AssetWatcher, Param, dag, task

    from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger

    WORKFLOW_RUNS = Asset(
        name=f"captaindata_workflow_runs_{WORKFLOW_UID}",
        watchers=[
            AssetWatcher(
                name="captaindata_run_finished",
                trigger=CaptainDataRunFinishedTrigger(
                    api_version="v3",
                    workflow_uid=WORKFLOW_UID,
                    states=["succeeded"],  # failed runs are not loaded
                    captaindata_conn_id=CONN_ID,
                    poll_interval=POLL_SECONDS,
                    # mode="webhook": react to Captain Data's webhooks instead of polling
                ),
            )
        ],
    )
    SCHEDULE: Any = [WORKFLOW_RUNS]
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

    SCHEDULE = None


@dag(
    dag_id="captaindata_event_scheduled",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v3", "event-driven"],
    # Empty: the runs whose events started this DAG run. Set it to collect one run by hand.
    params={"run_uid": Param("", type="string")},
)
def captaindata_event_scheduled() -> None:
    results = CaptainDataCollectRunOperator(
        task_id="collect_results",
        run_uid="{{ params.run_uid }}",
        captaindata_conn_id=CONN_ID,
    )

    @task
    def load(rows: list[dict[str, Any]], triggering_asset_events: Any = None) -> dict[str, Any]:
        """Stands for the warehouse load; prints which Captain Data runs started this DAG run."""
        for events in (triggering_asset_events or {}).values():
            for event in events:
                run = event.extra.get("payload", {})
                print(f"started by run {run.get('run_uid')} ({run.get('run_name')}), {run.get('status')}")
        print(f"{len(rows)} companies, e.g. {[r.get('company_name') for r in rows[:3]]}")
        return {"rows": len(rows)}

    load(results.output)


captaindata_event_scheduled()
