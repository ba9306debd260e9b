"""The Captain Data API client: transport, retry policy, settings, versions, models, catalog.

Nothing under this package imports Airflow (``tests/test_layers.py`` fails if it does): a
plain script can use it, and the Airflow integration (hooks, operators, sensor, triggers) is
built on top of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.api import CaptainDataClient
    from airflow_provider_captaindata.client.api_async import CaptainDataAsyncClient
    from airflow_provider_captaindata.client.policy import RetryPolicy

__all__ = ["CaptainDataAsyncClient", "CaptainDataClient", "RetryPolicy"]

_HOMES = {
    "CaptainDataClient": "airflow_provider_captaindata.client.api",
    "CaptainDataAsyncClient": "airflow_provider_captaindata.client.api_async",
    "RetryPolicy": "airflow_provider_captaindata.client.policy",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: importing one submodule (settings, versions) stays cheap.
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
