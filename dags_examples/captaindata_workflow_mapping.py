"""Launch several v3 workflows in parallel with dynamic task mapping, then combine the results.

One mapped task instance per (workflow, inputs) pair: each launches its own run, waits for it
on the triggerer and returns its rows. A mapped instance names its run after its map index,
so a retried instance finds its own run again and never launches a second one.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))

# The emulator's seeded workflows; replace with yours (GET /v3/workflows lists them).
BATCHES = [
    {
        "workflow_uid": "7600fcc0-8ccc-53ea-897d-5bc01fa69f75",  # Extract LinkedIn People Profile
        "inputs": [
            {"linkedin_profile_url": "https://www.linkedin.com/in/ada-lovelace"},
            {"linkedin_profile_url": "https://www.linkedin.com/in/grace-hopper"},
        ],
    },
    {
        "workflow_uid": "e5384e86-64ce-50b8-945d-903f83098906",  # Extract LinkedIn Company
        "inputs": [{"linkedin_company_url": "https://www.linkedin.com/company/apache"}],
    },
    {
        "workflow_uid": "238353ee-b428-5e29-80ce-feefc7b72cd8",  # Search LinkedIn People
        "inputs": [
            {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=airflow"}
        ],
    },
]


@dag(
    dag_id="captaindata_workflow_mapping",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v3"],
    params={"batches": Param(BATCHES, type="array")},
    max_active_tasks=8,  # how many runs may wait at once (the triggerer holds the waits)
)
def captaindata_workflow_mapping() -> None:
    @task
    def batches(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The mapping's keyword arguments: one dict per workflow run."""
        assert params is not None
        return [{"workflow_uid": b["workflow_uid"], "inputs": b["inputs"]} for b in params["batches"]]

    launched = CaptainDataLaunchWorkflowOperator.partial(
        task_id="launch",
        deferrable=True,
        poll_interval=POLL_SECONDS,
    ).expand_kwargs(batches())

    @task
    def combine(per_workflow: Any) -> dict[str, Any]:
        """``per_workflow`` is lazy: one list of rows per mapped instance, in map-index order."""
        counts = [len(rows) for rows in per_workflow]
        print(f"rows per workflow run: {counts}")
        return {"rows": sum(counts), "runs": len(counts)}

    combine(launched.output)


captaindata_workflow_mapping()
