"""The stack's single launch, waiting on the worker (not deferred), results to S3.

Waiting on the worker keeps the task running there for the whole run: the faults that hit a
worker (killed right after the launch POST) or the store (S3 refusing writes while the
results are written) find it there.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

OUTPUT_BASE = os.environ.get("CAPTAINDATA_STACK_OUTPUT_BASE", "file:///tmp/captaindata-stack")
EXTRACT_PEOPLE = "7600fcc0-8ccc-53ea-897d-5bc01fa69f75"


@dag(
    dag_id="stack_launch",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "stack"],
    params={"profiles": Param(10, type="integer", minimum=1)},
)
def stack_launch() -> None:
    @task
    def profiles(params: dict[str, Any] | None = None, run_id: str | None = None) -> list[dict[str, str]]:
        assert params is not None
        return [
            {"linkedin_profile_url": f"https://www.linkedin.com/in/stack-launch-{i}"}
            for i in range(params["profiles"])
        ]

    CaptainDataLaunchWorkflowOperator(
        task_id="launch",
        workflow_uid=EXTRACT_PEOPLE,
        inputs=profiles(),
        deferrable=False,
        poll_interval=1,
        output_path=OUTPUT_BASE + "/{{ dag.dag_id }}/{{ run_id }}/results.jsonl",
        retries=3,
        retry_delay=timedelta(seconds=3),
    )


stack_launch()
