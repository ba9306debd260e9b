"""Hooks for the Captain Data API: ``CaptainDataHook`` (blocking, for workers) and
``CaptainDataAsyncHook`` (non-blocking, for triggers and live fan-out).

Thin adapters: each builds its client (:mod:`airflow_provider_captaindata.client`) from the
Airflow connection (:class:`~airflow_provider_captaindata.client.settings.ConnectionSettings`)
and adds what only Airflow needs, the connection form and ``test_connection``. Every endpoint
method is the client's (same name, signature and behaviour).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_captaindata.client.action_inputs import validate_action_input
from airflow_provider_captaindata.client.api import CaptainDataClient
from airflow_provider_captaindata.client.paging import next_page_url
from airflow_provider_captaindata.client.policy import RetryPolicy
from airflow_provider_captaindata.client.settings import ConnectionSettings
from airflow_provider_captaindata.exceptions import CaptainDataAPIError, CaptainDataError
from airflow_provider_captaindata.hooks.base import CaptainDataBaseHook, delegate

if TYPE_CHECKING:
    from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

__all__ = [
    "CaptainDataAsyncHook",
    "CaptainDataHook",
    "next_page_url",
    "validate_action_input",
]


class CaptainDataHook(CaptainDataBaseHook):
    """Blocking client of both Captain Data APIs, for code running on a worker: every endpoint
    method of :class:`~airflow_provider_captaindata.client.api.CaptainDataClient`, with the
    client built from an Airflow connection.

    :param captaindata_conn_id: Airflow connection of type ``captaindata`` (API key in the
        password, v3 project uid and optional base URLs in the extra).
    :param retry_policy: timeouts and retries; the default suits the real API.
    """

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form on Airflow < 3.2 (3.2+ reads provider info)."""
        from airflow_provider_captaindata.connection_form import form_widgets

        return form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabelled and hidden standard fields on Airflow < 3.2."""
        from airflow_provider_captaindata.connection_form import field_behaviour

        return field_behaviour()

    @cached_property
    def settings(self) -> ConnectionSettings:
        return ConnectionSettings.from_connection(self.get_connection(self.captaindata_conn_id))

    @cached_property
    def client(self) -> CaptainDataClient:
        """The API client, built from the connection on first use."""
        return CaptainDataClient(settings=self.settings, retry_policy=self.retry_policy)

    def get_conn(self) -> ConnectionSettings:
        return self.settings

    v1_client = delegate(CaptainDataClient.v1_client)
    get_workspace = delegate(CaptainDataClient.get_workspace)
    list_workflows = delegate(CaptainDataClient.list_workflows)
    get_workflow_details = delegate(CaptainDataClient.get_workflow_details)
    launch_workflow = delegate(CaptainDataClient.launch_workflow)
    launch_workflow_once = delegate(CaptainDataClient.launch_workflow_once)
    list_workflow_runs = delegate(CaptainDataClient.list_workflow_runs)
    find_workflow_run = delegate(CaptainDataClient.find_workflow_run)
    get_workflow_run = delegate(CaptainDataClient.get_workflow_run)
    iter_workflow_results = delegate(CaptainDataClient.iter_workflow_results)
    get_workflow_run_inputs = delegate(CaptainDataClient.get_workflow_run_inputs)
    retry_workflow_run = delegate(CaptainDataClient.retry_workflow_run)
    stop_workflow_run = delegate(CaptainDataClient.stop_workflow_run)
    delete_workflow_schedule = delegate(CaptainDataClient.delete_workflow_schedule)
    iter_live_pages = delegate(CaptainDataClient.iter_live_pages)
    run_action_live = delegate(CaptainDataClient.run_action_live)
    run_action_async = delegate(CaptainDataClient.run_action_async)
    run_action_async_once = delegate(CaptainDataClient.run_action_async_once)
    get_action_run = delegate(CaptainDataClient.get_action_run)
    list_action_runs = delegate(CaptainDataClient.list_action_runs)
    find_action_run_by_callback = delegate(CaptainDataClient.find_action_run_by_callback)
    resume_action_run = delegate(CaptainDataClient.resume_action_run)
    list_run_callbacks = delegate(CaptainDataClient.list_run_callbacks)
    replay_run_callback = delegate(CaptainDataClient.replay_run_callback)
    schedule_action = delegate(CaptainDataClient.schedule_action)
    list_schedules = delegate(CaptainDataClient.list_schedules)
    get_schedule = delegate(CaptainDataClient.get_schedule)
    change_schedule = delegate(CaptainDataClient.change_schedule)
    get_workspaces = delegate(CaptainDataClient.get_workspaces)
    list_identities = delegate(CaptainDataClient.list_identities)
    list_integrations = delegate(CaptainDataClient.list_integrations)
    get_run = delegate(CaptainDataClient.get_run)
    stop_run = delegate(CaptainDataClient.stop_run)

    def test_connection(self) -> tuple[bool, str]:
        """The Test button: a cheap authenticated call per configured API version."""
        # The Test button should answer in seconds: two tries, short timeouts.
        quick = CaptainDataHook(
            self.captaindata_conn_id,
            retry_policy=RetryPolicy(attempts=2, backoff_max=2.0, connect_timeout=5.0, read_timeout=15.0),
        )
        try:
            return quick._test_connection()
        except CaptainDataError as exc:
            return False, str(exc)

    def _test_connection(self) -> tuple[bool, str]:
        if self.settings.api_version == "v1":
            return True, f"v1 OK ({_workspace_name(self.v1_client().quotas())})"
        try:
            workspaces = self.get_workspaces()
        except CaptainDataAPIError as exc:
            if exc.status_code not in (401, 403):
                raise
            # Perhaps a key of the current API (v1), which new customers get.
            try:
                quotas = self.v1_client().quotas()
            except CaptainDataError:
                raise exc from None
            return True, f"v1 OK ({_workspace_name(quotas)}); v4 refused the key: set api_version to v1"
        parts = [f"v4 OK ({_workspace_name(workspaces)})"]
        if self.settings.project_uid:
            parts.append(f"v3 OK ({_workspace_name(self.get_workspace())})")
        return True, "; ".join(parts)


def _workspace_name(data: Any) -> str:
    if isinstance(data, list):
        data = data[0] if data else {}
    return str((data or {}).get("name") or "workspace")


def __getattr__(name: str) -> Any:
    # Both hooks are public under this module path; the async one (and aiohttp's transport) is
    # imported on first use, since DAG files import this module to be parsed.
    if name == "CaptainDataAsyncHook":
        from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

        return CaptainDataAsyncHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
