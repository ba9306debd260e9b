"""Launch a Captain Data v3 workflow, wait for it on the triggerer, use its rows downstream.

The operator pushes every result row to XCom (bounded: past ``max_xcom_bytes`` it fails and
tells you to set ``output_path``, see ``captaindata_workflow_to_storage.py``), plus the run
uid and its link in the Captain Data app ("Captain Data run" button on the task).

Connection ``captaindata_default``: type Captain Data, API key as password, the workspace uid
as "Project (workspace) uid". The default workflow uid is the emulator's "Extract LinkedIn
People Profile" workflow; pass yours when triggering (or set the Variable below).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

# Seconds between two status reads of the run. 30 s suits real runs (minutes long); the
# demo and the tests lower it because the emulator's runs last seconds.
POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))


@dag(
    dag_id="captaindata_workflow_xcom",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v3"],
    params={
        "workflow_uid": Param("7600fcc0-8ccc-53ea-897d-5bc01fa69f75", type="string"),
        "profiles": Param(
            [
                {"linkedin_profile_url": "https://www.linkedin.com/in/ada-lovelace"},
                {"linkedin_profile_url": "https://www.linkedin.com/in/grace-hopper"},
                {"linkedin_profile_url": "https://www.linkedin.com/in/alan-turing"},
            ],
            type="array",
        ),
    },
)
def captaindata_workflow_xcom() -> None:
    rows = CaptainDataLaunchWorkflowOperator(
        task_id="extract_profiles",
        captaindata_conn_id="captaindata_default",
        # A Variable works too: "{{ var.value.get('captaindata_workflow_uid', params.workflow_uid) }}"
        workflow_uid="{{ params.workflow_uid }}",
        inputs="{{ params.profiles | tojson }}",  # a JSON string is accepted once rendered
        deferrable=True,  # wait on the triggerer: no worker slot held while the run runs
        poll_interval=POLL_SECONDS,
        timeout=3600,  # stop waiting after an hour (the run itself keeps going)
    )

    @task
    def companies(rows: list[dict[str, Any]]) -> dict[str, Any]:
        """What a real DAG would do next: load, dedupe, count. Here: profiles per company."""
        per_company = Counter(str(row.get("company_name") or "unknown") for row in rows)
        print(f"{len(rows)} profiles from {len(per_company)} companies: {per_company.most_common(5)}")
        return {"rows": len(rows), "companies": len(per_company)}

    companies(rows.output)


captaindata_workflow_xcom()
