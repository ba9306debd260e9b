"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Airflow 3.2+ builds the connection form from ``conn-fields`` and ``ui-field-behaviour`` here,
without importing the hook; Airflow 2.11 reads the hook's ``get_connection_form_widgets``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_captaindata import __version__

_PKG = "airflow_provider_captaindata"

# One source for the form: the hook's Airflow 2.11 widgets are built from this too.
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "project_uid": {
        "label": "Project (workspace) uid",
        "description": "v3 only: the workspace uid sent as x-project-id. Leave empty for v4-only use.",
        "schema": {"type": ["string", "null"]},
    },
    "rate_limit_per_second": {
        "label": "Live rate limit (requests/s)",
        "description": "Your plan's v4 live limit: 1, 2, 10, 20 or 40. Fan-out paces itself at this rate.",
        "schema": {"type": ["number", "null"], "default": 1},
    },
    "v3_base_url": {
        "label": "v3 base URL",
        "description": "Override of https://api.captaindata.co/v3 (leave empty).",
        "schema": {"type": ["string", "null"]},
    },
    "v4_base_url": {
        "label": "v4 base URL",
        "description": "Override of https://api.captaindata.com/v4 (leave empty).",
        "schema": {"type": ["string", "null"]},
    },
    "callback_base_url": {
        "label": "Callback base URL",
        "description": "Public URL of the callback receiver, for v4 async results (e.g. https://airflow.example.com/captaindata).",
        "schema": {"type": ["string", "null"]},
    },
    "callback_secret": {
        "label": "Callback secret",
        "description": "Secret that signs callback URLs; the receiver must have the same one.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "callback_storage": {
        "label": "Callback storage",
        "description": "Where received result pages are written: any object-storage URI (file:///..., s3://...).",
        "schema": {"type": ["string", "null"]},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login", "schema", "port", "extra"],
    "relabeling": {"password": "API key", "host": "API origin (optional)"},
    "placeholders": {
        "host": "empty for the real API; http://127.0.0.1:8089 for a local emulator",
        "password": "your Captain Data API key",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-captaindata",
        "name": "Captain Data",
        "description": "Run Captain Data v3 workflows and v4 actions from Airflow: launch, wait "
        "deferrably, collect every result into XCom or object storage.",
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
                "python-modules": [f"{_PKG}.operators.workflows", f"{_PKG}.operators.actions"],
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
