"""The stack's live fan-out of an action with effects: one LinkedIn message per profile, live.

A message must never go out twice: each input's outcome is checkpointed as it is sent, so a
retry after a crash sends only the inputs with none, and reports the ones that were in flight
(outcome unknown) in the ``input_errors`` XCom instead of sending them again.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

OUTPUT_BASE = os.environ.get("CAPTAINDATA_STACK_OUTPUT_BASE", "file:///tmp/captaindata-stack")


@dag(
    dag_id="stack_fanout",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "stack"],
    params={"profiles": Param(24, type="integer", minimum=1)},
)
def stack_fanout() -> None:
    @task
    def profiles(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        assert params is not None
        return [
            {"linkedin_profile_url": f"https://www.linkedin.com/in/stack-fanout-{i}"}
            for i in range(params["profiles"])
        ]

    CaptainDataRunActionOperator(
        task_id="message",
        action="linkedin-message-profile",
        inputs=profiles(),
        max_concurrency=2,
        on_input_error="continue",  # an input in flight when the worker died: reported, not resent
        output_path=OUTPUT_BASE + "/{{ dag.dag_id }}/{{ run_id }}/results.jsonl",
        retries=3,
        retry_delay=timedelta(seconds=3),
    )


stack_fanout()
