"""Run a v4 action async on a batch of profiles, wait for it deferrably, then read its results.

Async runs take up to 100,000 inputs. Captain Data does not return their results on request:
it POSTs them, one page per request, to the callback URL given at launch. The provider's
callback receiver takes those POSTs and stores each page; in Airflow 3 it is served by the API
server itself under ``/captaindata`` (plugin ``captaindata_callbacks``), elsewhere run
``captaindata-callback-receiver``. The connection says where it is and where pages go:

    extra = {"callback_base_url": "https://airflow.example.com/captaindata",
             "callback_secret": "<a long random string>",
             "callback_storage": "s3://aws_default@my-bucket/captaindata-callbacks"}

The DAG: (1) make this launch's callback URL (signed, so the receiver accepts pages for this
launch only), (2) launch and wait on the triggerer, (3) check every page arrived (replaying
missing ones) and read the rows from storage.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

POLL_SECONDS = float(os.environ.get("CAPTAINDATA_EXAMPLE_POLL_SECONDS", "30"))
CONN_ID = "captaindata_default"


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
    @task(multiple_outputs=True)
    def callback_target(dag_run: Any = None) -> dict[str, str]:
        from airflow_provider_captaindata.callbacks.tokens import callback_url_for

        settings = CaptainDataHook(CONN_ID).settings
        if not (settings.callback_base_url and settings.callback_secret and settings.callback_storage):
            raise ValueError(
                f"Connection {CONN_ID!r} needs callback_base_url, callback_secret and callback_storage "
                "for async results (see this DAG's docstring)."
            )
        # One key per DAG run: the receiver files this launch's pages under it.
        launch_key = hashlib.sha256(f"{dag_run.dag_id}|{dag_run.run_id}".encode()).hexdigest()[:24]
        url = callback_url_for(
            settings.callback_base_url, settings.callback_secret.get_secret_value(), launch_key
        )
        return {"url": url, "launch_key": launch_key, "storage": settings.callback_storage}

    @task
    def profiles(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        assert params is not None
        return [{"linkedin_profile_url": url} for url in params["profile_urls"]]

    target = callback_target()
    run = CaptainDataRunActionOperator(
        task_id="enrich_async",
        action="{{ params.action }}",
        mode="async",
        inputs=profiles(),
        callback_url=target["url"],
        deferrable=True,  # the run takes minutes to hours: wait on the triggerer
        poll_interval=POLL_SECONDS,
        timeout=6 * 3600,
    )

    @task
    def read_results(run: dict[str, Any], launch_key: str, storage: str) -> dict[str, Any]:
        from airflow_provider_captaindata.callbacks.reconcile import reconcile_run

        # Pages can still be in flight when the run is final: wait for them (bounded), replay
        # the ones that never arrived, then fail if any is still missing.
        report = reconcile_run(
            CaptainDataHook(CONN_ID), run["uid"], launch_key, storage, replay_wait_seconds=60
        )
        report.check(on_missing="fail")
        names = [row.get("full_name") for page in report.iter_pages() for row in page]
        print(f"run {run['uid']} ({run['status']}): {len(names)} rows, e.g. {names[:3]}")
        return {"rows": report.rows, **report.summary()}

    read_results(run.output, target["launch_key"], target["storage"])


captaindata_action_async()
