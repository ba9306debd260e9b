"""The stack's wide DAG: one mapped v3 launch per profile, all waiting on the triggerers at once.

Each mapped instance launches its run (named after its map index, so a retry finds it again),
defers, and writes its rows to its own JSON Lines file in S3 under ``{run_id}/``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

OUTPUT_BASE = os.environ.get("CAPTAINDATA_STACK_OUTPUT_BASE", "file:///tmp/captaindata-stack")
EXTRACT_PEOPLE = "7600fcc0-8ccc-53ea-897d-5bc01fa69f75"  # the emulator's "Extract LinkedIn People Profile"


@dag(
    dag_id="stack_deferred",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "stack"],
    params={"tasks": Param(20, type="integer", minimum=1)},
    max_active_tasks=64,
)
def stack_deferred() -> None:
    @task
    def profiles(params: dict[str, Any] | None = None) -> list[list[dict[str, str]]]:
        assert params is not None
        return [
            [{"linkedin_profile_url": f"https://www.linkedin.com/in/stack-person-{i}"}]
            for i in range(params["tasks"])
        ]

    CaptainDataLaunchWorkflowOperator.partial(
        task_id="launch",
        workflow_uid=EXTRACT_PEOPLE,
        deferrable=True,
        poll_interval=2,
        output_path=OUTPUT_BASE + "/{{ dag.dag_id }}/{{ run_id }}/{{ ti.map_index }}.jsonl",
        retries=2,
        retry_delay=timedelta(seconds=3),
    ).expand(inputs=profiles())


stack_deferred()
