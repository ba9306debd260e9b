"""The "Captain Data run" extra link on operators and the sensor."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

from airflow_provider_captaindata.client.versions import get_version

RUN_UID_KEY = "run_uid"
RUN_URL_KEY = "run_url"


def run_url(api_version: str, run_uid: str) -> str:
    """The run's page in the Captain Data app."""
    return get_version(api_version).app_run_url.format(run_uid=run_uid)


def push_run_url(operator: Any, ti: Any, url: str) -> None:
    """Show ``url`` as the task's link: the ``run_url`` XCom (what Airflow 2.11's webserver
    reads), also kept on the operator for :meth:`CaptainDataRunLink.get_link` on the worker."""
    ti.xcom_push(key=RUN_URL_KEY, value=url)
    operator._captaindata_run_url = url


class CaptainDataRunLink(BaseOperatorLink):
    """Opens the task's run in the Captain Data app (from the ``run_url`` XCom)."""

    name = "Captain Data run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        # Airflow 3 asks on the worker at the end of every try, with the live operator, which
        # knows its link: asking the API server for a run_url a try that failed before its
        # launch never pushed would log an ERROR "XCom not found" after the real error.
        known = getattr(operator, "captaindata_run_url", None)
        if callable(known):
            return known() or ""
        return XCom.get_value(key=RUN_URL_KEY, ti_key=ti_key) or ""
