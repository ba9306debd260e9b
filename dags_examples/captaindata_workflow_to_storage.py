"""Launch a v3 workflow and stream its results to object storage instead of XCom.

Big runs do not belong in XCom (the metadata database). With ``output_path`` the operator
writes the rows page by page to one JSON Lines file, whatever their number, and pushes only
``{"path", "rows", "run_uid"}`` to XCom. A retried task rewrites the file whole: no row twice.

``output_path`` is anything Airflow's ObjectStoragePath opens: ``file://`` needs nothing, and
with the Amazon provider installed and an ``aws_default`` connection, S3 works the same way::

    output_path="s3://aws_default@my-bucket/captaindata/{{ dag.dag_id }}/{{ run_id }}.jsonl"

Here the base comes from the ``output_base`` param (default: ``$CAPTAINDATA_EXAMPLE_OUTPUT_BASE``
or ``file:///tmp/captaindata-examples``). The default workflow is the emulator's "Search
LinkedIn People".
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import ObjectStoragePath, Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.io.path import ObjectStoragePath
    from airflow.models.param import Param

from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))
OUTPUT_BASE = os.environ.get("CAPTAINDATA_EXAMPLE_OUTPUT_BASE", "file:///tmp/captaindata-examples")


@dag(
    dag_id="captaindata_workflow_to_storage",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v3"],
    params={
        "workflow_uid": Param("238353ee-b428-5e29-80ce-feefc7b72cd8", type="string"),
        "search_urls": Param(
            [
                "https://www.linkedin.com/search/results/people/?keywords=data%20engineer",
                "https://www.linkedin.com/search/results/people/?keywords=analytics%20engineer",
            ],
            type="array",
        ),
        "output_base": Param(OUTPUT_BASE, type="string"),
    },
)
def captaindata_workflow_to_storage() -> None:
    @task
    def inputs(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """One input per search URL, in the shape the workflow's first step expects."""
        assert params is not None
        return [{"linkedin_people_search_url": url} for url in params["search_urls"]]

    written = CaptainDataLaunchWorkflowOperator(
        task_id="search_people",
        workflow_uid="{{ params.workflow_uid }}",
        inputs=inputs(),  # from an upstream task (XComArg): rendered before the launch
        # run_id is unique per DAG run, so each run gets its own file.
        output_path="{{ params.output_base }}/{{ dag.dag_id }}/{{ run_id }}.jsonl",
        deferrable=True,
        poll_interval=POLL_SECONDS,
    )

    @task
    def titles(written: dict[str, Any]) -> dict[str, Any]:
        """Read the file back one line at a time (memory stays flat however big it is)."""
        per_title: Counter[str] = Counter()
        with ObjectStoragePath(written["path"]).open("r") as lines:
            # readline, not "for line in lines": Airflow 2.11's file wrapper is not iterable.
            for line in iter(lines.readline, ""):
                per_title[str(json.loads(line).get("job_title"))] += 1
        print(f"{written['rows']} rows in {written['path']}; top titles: {per_title.most_common(3)}")
        return {"rows": written["rows"], "path": written["path"]}

    titles(written.output)


captaindata_workflow_to_storage()
