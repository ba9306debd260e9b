"""Mounts the callback receiver in the Airflow 3 API server, under ``/captaindata``.

With the provider installed, ``{airflow_api_url}/captaindata`` is a callback base URL: a
deployment whose Airflow API server is reachable by Captain Data needs nothing else. The
receiver reads ``callback_secret`` and ``callback_storage`` from the ``captaindata_default``
connection (or the one named by ``[captaindata] callback_conn_id`` in the Airflow config,
``AIRFLOW__CAPTAINDATA__CALLBACK_CONN_ID``) on the first callback.

Every Airflow process (scheduler, workers, triggerer) loads plugins, and Airflow 2.11 has no
``fastapi_apps`` at all: so this module imports nothing heavy, and the FastAPI app is built
only when the API server asks for ``fastapi_apps``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowPlugin

URL_PREFIX = "/captaindata"
APP_NAME = "Captain Data callbacks"


def _airflow_3() -> bool:
    from airflow import __version__

    return int(__version__.split(".", 1)[0]) >= 3


def build_fastapi_app() -> Any:
    """A FastAPI app (what the API server expects) with the Starlette receiver mounted at its root."""
    from airflow.configuration import conf
    from fastapi import FastAPI

    from airflow_provider_captaindata.callbacks.app import create_app
    from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID

    conn_id = conf.get("captaindata", "callback_conn_id", fallback=DEFAULT_CONN_ID) or DEFAULT_CONN_ID

    app = FastAPI(
        title=APP_NAME,
        description="Receives Captain Data v4 async result pages (callbacks) and v3 webhooks.",
        docs_url=None,  # nothing to browse: every route is machine-to-machine
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/", create_app(conn_id=conn_id))
    return app


class _LazyFastAPIApps:
    """``fastapi_apps`` built on first access and then kept (one receiver per process)."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        if self._apps is None:
            self._apps = (
                [{"app": build_fastapi_app(), "url_prefix": URL_PREFIX, "name": APP_NAME}]
                if _airflow_3()
                else []
            )
        return self._apps


class CaptainDataCallbacksPlugin(AirflowPlugin):  # type: ignore[misc,valid-type]
    """Registers the Captain Data callback receiver with the Airflow 3 API server."""

    name = "captaindata_callbacks"
    fastapi_apps = _LazyFastAPIApps()  # type: ignore[assignment]
