"""Wait for a Captain Data run that something else started, then use its results.

The sensor does not launch anything: it waits on a run uid (v3 job uid or v4 run uid) and
fails with the remote error if the run fails. Typical sources of that uid: a run started from
the Captain Data app or a schedule (pass it in the ``run_uid`` param), another DAG, or, as
here by default, a first task that launches with the hook and returns the uid.
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

from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.sensors.runs import CaptainDataRunSensor

POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))
CONN_ID = "captaindata_default"


@dag(
    dag_id="captaindata_sensor",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v3"],
    params={
        # Empty: launch one below. Set it to wait on a run started elsewhere instead.
        "run_uid": Param("", type="string"),
        "workflow_uid": Param("e5384e86-64ce-50b8-945d-903f83098906", type="string"),
        "company_urls": Param(
            ["https://www.linkedin.com/company/captaindata", "https://www.linkedin.com/company/apache"],
            type="array",
        ),
    },
)
def captaindata_sensor() -> None:
    @task
    def start_run(params: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """Stands for "somewhere else": launches with the hook and returns the run uid."""
        assert params is not None
        if params["run_uid"]:
            return str(params["run_uid"])
        hook = CaptainDataHook(CONN_ID)
        step = hook.get_workflow_details(params["workflow_uid"]).steps[0]
        # launch_workflow_once: after an ambiguous failure it looks the run up by name
        # instead of launching a second one (credits are spent per result).
        return hook.launch_workflow_once(
            params["workflow_uid"],
            job_name=f"airflow-example-sensor-{run_id}",
            inputs=[{"linkedin_company_url": url} for url in params["company_urls"]],
            steps=[{"step_uid": step.step_uid, "accounts": [], "parameters": {}}],
        )

    run_uid = start_run()
    done = CaptainDataRunSensor(
        task_id="wait_for_run",
        run_uid=run_uid,  # or a template: "{{ ti.xcom_pull(task_ids='start_run') }}"
        api_version="v3",
        deferrable=True,
        poke_interval=POLL_SECONDS,
        timeout=6 * 3600,
    )

    @task
    def use_results(run_uid: str) -> dict[str, Any]:
        rows = [row for page in CaptainDataHook(CONN_ID).iter_workflow_results(run_uid) for row in page]
        print(f"run {run_uid}: {len(rows)} companies, e.g. {[r.get('company_name') for r in rows[:3]]}")
        return {"rows": len(rows)}

    results = use_results(run_uid)
    done >> results


captaindata_sensor()
