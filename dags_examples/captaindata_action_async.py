"""Run a v4 action async on a batch of profiles, wait for it deferrably, then use its rows.

Async runs take up to 100,000 inputs. Captain Data does not return their results on request:
it POSTs them, one page per request, to a callback URL given at launch. The provider's
callback receiver takes those POSTs and stores each page; in Airflow 3 it is served by the API
server itself under ``/captaindata`` (plugin ``captaindata_callbacks``), elsewhere run
``captaindata-callback-receiver``. Three fields of the connection tell the operator where it is:

    extra = {"callback_base_url": "https://airflow.example.com/captaindata",
             "callback_secret": "<a long random string>",
             "callback_storage": "s3://aws_default@my-bucket/captaindata-callbacks"}

The operator gives Captain Data a URL signed for this launch only, waits for the run on the
triggerer, checks every page arrived (replaying missing ones), and returns the rows like the
live modes: to XCom, or to ``output_path`` with a summary. Counts are in the XCom
``callback_summary``. Pass your own ``callback_url`` instead to receive the pages yourself
(the task then returns the final run).
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

from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))


@dag(
    dag_id="captaindata_action_async",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v4"],
    params={
        "action": Param("linkedin-extract-people", type="string"),
        "profile_urls": Param(
            [f"https://www.linkedin.com/in/example-person-{i}" for i in range(1, 6)], type="array"
        ),
    },
)
def captaindata_action_async() -> None:
    @task
    def profiles(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        assert params is not None
        return [{"linkedin_profile_url": url} for url in params["profile_urls"]]

    rows = CaptainDataRunActionOperator(
        task_id="enrich_async",
        captaindata_conn_id="captaindata_default",  # with the three callback_* fields above
        action="{{ params.action }}",
        mode="async",
        inputs=profiles(),
        deferrable=True,  # the run takes minutes to hours: wait on the triggerer
        poll_interval=POLL_SECONDS,
        timeout=6 * 3600,
    )

    @task
    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        names = [row.get("full_name") for row in rows]
        print(f"{len(rows)} profiles enriched, e.g. {names[:3]}")
        return {"rows": len(rows)}

    summary(rows.output)


captaindata_action_async()
