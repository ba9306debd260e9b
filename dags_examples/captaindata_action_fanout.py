"""Enrich a list of LinkedIn profiles with a v4 action, live, one call per profile.

With ``inputs`` (a list) in live mode the operator makes one live call per input, at most
``max_concurrency`` in flight, paced at the connection's ``rate_limit_per_second`` (set it to
your plan's live rate: 1, 2, 10, 20 or 40; the default, 1, is never refused but slow). Each row
carries ``custom_data.airflow_input_index``, the index of its input, and rows come back in
input order. A failed input fails the task after the batch, naming every failed input
(``on_input_error="continue"`` hands them on under the XCom key ``input_errors`` instead).

No run to wait for here: live calls answer with the result itself. For thousands of inputs,
prefer an async run (``captaindata_action_async.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

PROFILES = [
    "https://www.linkedin.com/in/ada-lovelace",
    "https://www.linkedin.com/in/grace-hopper",
    "https://www.linkedin.com/in/alan-turing",
    "https://www.linkedin.com/in/katherine-johnson",
    "https://www.linkedin.com/in/edsger-dijkstra",
    "https://www.linkedin.com/in/barbara-liskov",
]


@dag(
    dag_id="captaindata_action_fanout",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v4"],
    params={
        "action": Param("linkedin-extract-people", type="string"),
        "profile_urls": Param(PROFILES, type="array"),
    },
)
def captaindata_action_fanout() -> None:
    @task
    def profiles(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The action's inputs; ``custom_data`` is echoed back with each input's result."""
        assert params is not None
        return [
            {"linkedin_profile_url": url, "custom_data": {"source": "crm"}} for url in params["profile_urls"]
        ]

    enriched = CaptainDataRunActionOperator(
        task_id="enrich_profiles",
        action="{{ params.action }}",
        inputs=profiles(),
        parameters={"experiences": True},  # the action's own options, checked against its schema
        max_concurrency=4,
    )

    @task
    def by_title(rows: list[dict[str, Any]]) -> dict[str, Any]:
        for row in rows:
            index = row["custom_data"]["airflow_input_index"]
            print(
                f"input {index}: {row.get('full_name')} - {row.get('job_title')} at {row.get('company_name')}"
            )
        return {"rows": len(rows)}

    by_title(enriched.output)


captaindata_action_fanout()
