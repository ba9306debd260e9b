"""Publish a Captain Data workflow's results as an Asset: DAGs scheduled on it run after each run.

The operator writes the rows to a fixed ``output_path`` (each run replaces the file whole, never
half-written) and lists that file's Asset in ``outlets``. When the rows have landed, the asset
event carries ``extra`` = ``{run_uid, api_version, workflow_uid, rows, path}``: the task's
"Asset Events" tab shows it, and ``captaindata_asset_consumer`` (``schedule=[PEOPLE]``) starts.

``captaindata_asset(path)`` builds the Asset from the same URI the operator writes to
(``s3://aws_default@bucket/key`` -> ``s3://bucket/key``). A path templated per run
(``{{ run_id }}``) cannot be an Asset URI: use ``outlets=[AssetAlias("...")]`` instead, see
docs/howto/assets.md. With the OpenLineage provider configured, the same task also emits
lineage: the workflow as input dataset, the file as output (docs/howto/openlineage.md).
"""

from __future__ import annotations

import os
from datetime import datetime

try:  # Airflow 3
    from airflow.sdk import dag
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag

from airflow_provider_captaindata.assets import captaindata_asset
from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))
OUTPUT_BASE = os.environ.get("CAPTAINDATA_EXAMPLE_OUTPUT_BASE", "file:///tmp/captaindata-examples")
PEOPLE_PATH = f"{OUTPUT_BASE}/captaindata_assets/people.jsonl"
PEOPLE = captaindata_asset(PEOPLE_PATH)


@dag(
    dag_id="captaindata_asset_producer",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v3", "assets"],
)
def captaindata_asset_producer() -> None:
    CaptainDataLaunchWorkflowOperator(
        task_id="search_people",
        workflow_uid="238353ee-b428-5e29-80ce-feefc7b72cd8",  # the emulator's "Search LinkedIn People"
        inputs=[
            {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=dbt"},
            {
                "linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=airflow"
            },
        ],
        output_path=PEOPLE_PATH,
        outlets=[PEOPLE],
        poll_interval=POLL_SECONDS,
    )


captaindata_asset_producer()
