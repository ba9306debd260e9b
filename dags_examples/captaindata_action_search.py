"""Run a v4 search action live and keep the first ``max_results`` people.

Search and list actions answer one page at a time (10 rows for LinkedIn searches, 25 for Sales
Navigator); the operator follows the API's next-page header until the last page or until
``max_results`` rows, and fetches no page past the cap: credits are spent per result.
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


@dag(
    dag_id="captaindata_action_search",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v4"],
    params={
        "action": Param("linkedin-search-people", type="string"),
        "search_url": Param(
            "https://www.linkedin.com/search/results/people/?keywords=data%20engineer&geoUrn=%5B%22105015875%22%5D",
            type="string",
        ),
    },
)
def captaindata_action_search() -> None:
    people = CaptainDataRunActionOperator(
        task_id="search_people",
        action="{{ params.action }}",
        input={"linkedin_people_search_url": "{{ params.search_url }}"},  # nested values render too
        # A plain int (checked when the DAG is parsed): 25 rows = 3 pages of 10, the third cut.
        max_results=25,
    )

    @task
    def new_leads(rows: list[dict[str, Any]]) -> dict[str, Any]:
        """E.g. keep the profiles you have not contacted yet; here: the distinct ones."""
        urls = {row["linkedin_profile_url"] for row in rows}
        print(f"{len(rows)} people found, {len(urls)} distinct profiles")
        return {"rows": len(rows), "distinct": len(urls)}

    new_leads(people.output)


captaindata_action_search()
