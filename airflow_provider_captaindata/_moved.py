"""Old import paths of modules that moved into :mod:`airflow_provider_captaindata.client`.

Each old module (``airflow_provider_captaindata.http`` and the others in :data:`MOVED`) warns
once and then *is* its new module (same objects: ``isinstance`` and ``except`` keep working).
They go in the next release.
"""

from __future__ import annotations

import importlib
import sys
import warnings

MOVED = {
    "airflow_provider_captaindata.http": "airflow_provider_captaindata.client.transport",
    "airflow_provider_captaindata.http_async": "airflow_provider_captaindata.client.transport_async",
    "airflow_provider_captaindata.connection": "airflow_provider_captaindata.client.settings",
    "airflow_provider_captaindata.models": "airflow_provider_captaindata.client.models",
    "airflow_provider_captaindata.versions": "airflow_provider_captaindata.client.versions",
    "airflow_provider_captaindata.statuses": "airflow_provider_captaindata.client.statuses",
    "airflow_provider_captaindata.action_inputs": "airflow_provider_captaindata.client.action_inputs",
    "airflow_provider_captaindata.catalog": "airflow_provider_captaindata.client.catalog",
}


def alias(old: str) -> None:
    """Called by the module at ``old`` while it is imported: warn, and put the new module in
    its place (the import statement then binds the new module)."""
    new = MOVED[old]
    warnings.warn(
        f"{old} moved to {new}; import from there (the old path is removed in the next release)",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
