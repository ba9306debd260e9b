"""The "Captain Data run" extra link on operators and the sensor."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

RUN_UID_KEY = "run_uid"
RUN_URL_KEY = "run_url"


class CaptainDataRunLink(BaseOperatorLink):
    """Opens the task's run in the Captain Data app (from the ``run_url`` XCom)."""

    name = "Captain Data run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(key=RUN_URL_KEY, ti_key=ti_key) or ""
