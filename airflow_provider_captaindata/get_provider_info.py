"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Airflow 3.2+ builds the connection form from ``conn-fields`` and ``ui-field-behaviour`` here,
without importing the hook; Airflow 2.11 reads the hook's ``get_connection_form_widgets``
(both from :mod:`~airflow_provider_captaindata.connection_form`).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_captaindata import __version__
from airflow_provider_captaindata.connection_form import CONNECTION_FIELDS, UI_FIELD_BEHAVIOUR

_PKG = "airflow_provider_captaindata"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-captaindata",
        "name": "Captain Data",
        "description": "Captain Data from Airflow: v1 people and company search, find and "
        "enrichment at the plan's rate, v3 workflows and v4 actions launched and waited for "
        "deferrably, every result into XCom or object storage.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Captain Data",
                "external-doc-url": "https://docs.captaindata.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Captain Data", "python-modules": [f"{_PKG}.hooks.captaindata"]}],
        "operators": [
            {
                "integration-name": "Captain Data",
                "python-modules": [
                    f"{_PKG}.operators.workflows",
                    f"{_PKG}.operators.actions",
                    f"{_PKG}.operators.v1_search",
                    f"{_PKG}.operators.v1_enrich",
                ],
            }
        ],
        "sensors": [{"integration-name": "Captain Data", "python-modules": [f"{_PKG}.sensors.runs"]}],
        "triggers": [{"integration-name": "Captain Data", "python-modules": [f"{_PKG}.triggers.runs"]}],
        "connection-types": [
            {
                "connection-type": "captaindata",
                "hook-class-name": f"{_PKG}.hooks.captaindata.CaptainDataHook",
                "hook-name": "Captain Data",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "extra-links": [f"{_PKG}.links.CaptainDataRunLink"],
    }
