"""The Captain Data connection form: one description read two ways.

Airflow 3.2+ reads ``CONNECTION_FIELDS`` and ``UI_FIELD_BEHAVIOUR`` from the provider info;
Airflow 2.11 asks the hook, which answers with :func:`form_widgets` and
:func:`field_behaviour` built from the same dicts.
"""

from __future__ import annotations

from typing import Any

CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "project_uid": {
        "label": "Project (workspace) uid",
        "description": "v3 only: the workspace uid sent as x-project-id. Leave empty for v4-only use.",
        "schema": {"type": ["string", "null"]},
    },
    "rate_limit_per_second": {
        "label": "Live rate limit (requests/s)",
        "description": "Your plan's limit (v4 live calls, every v1 call): 1, 2, 10, 20 or 40. "
        "Fan-out and v1 calls pace themselves at this rate.",
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
    "v1_base_url": {
        "label": "v1 base URL",
        "description": "Override of https://api.captaindata.com/v1 (leave empty).",
        "schema": {"type": ["string", "null"]},
    },
    "api_version": {
        "label": "API generation of the key",
        "description": "v1 for a key of the current API (the Test button then calls GET /v1/quotas); "
        "empty: v4 (and v3 with a project uid).",
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
    "deployment": {
        "label": "Deployment name",
        "description": "Names this Airflow deployment (e.g. prod) so that deployments sharing a "
        "workspace never resume each other's runs. Default: the host of Airflow's base URL.",
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


def form_widgets() -> dict[str, Any]:
    """WTForms fields for the extras, for Airflow < 3.2 (imports Flask only when called)."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in CONNECTION_FIELDS.items():
        secret = spec["schema"].get("format") == "password"
        field_class = PasswordField if secret else StringField
        widget = BS3PasswordFieldWidget() if secret else BS3TextFieldWidget()
        widgets[name] = field_class(
            lazy_gettext(spec["label"]), widget=widget, description=spec["description"]
        )
    return widgets


def field_behaviour() -> dict[str, Any]:
    """Hidden, relabelled and placeholder standard fields, in Airflow < 3.2's key names."""
    return {
        "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }
