"""``CaptainDataAsyncClient``: the endpoints that run on an event loop (triggers, live fan-out).

Same settings, retry policy and errors as the blocking
:class:`~airflow_provider_captaindata.client.api.CaptainDataClient`. One HTTP pool per retry
policy and event loop is shared by every client, so thousands of waiting runs poll over a few
kept-alive connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_captaindata.client.calls import build_request, live_call, v4_runs_params
from airflow_provider_captaindata.client.policy import DEFAULT_POLICY, ApiResponse, RetryPolicy
from airflow_provider_captaindata.client.settings import ConnectionSettings
from airflow_provider_captaindata.client.statuses import RunSnapshot
from airflow_provider_captaindata.client.transport_async import AsyncTransport
from airflow_provider_captaindata.client.versions import V3, V4, ApiVersion, get_version

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.v1 import AsyncV1Client

SettingsSource = Callable[[], Awaitable[ConnectionSettings]]


class CaptainDataAsyncClient:
    """Non-blocking client of both Captain Data APIs.

    Takes the fields of :class:`~airflow_provider_captaindata.client.api.CaptainDataClient`
    (``api_key``, ``project_uid``...), or ``settings``, or ``settings_source``: a coroutine
    function read on the first call (the Airflow hook reads its connection that way).
    """

    _transports: ClassVar[dict[RetryPolicy, AsyncTransport]] = {}

    def __init__(
        self,
        api_key: str | None = None,
        *,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        settings: ConnectionSettings | None = None,
        settings_source: SettingsSource | None = None,
        **fields: Any,
    ) -> None:
        self.retry_policy = retry_policy
        self._settings: ConnectionSettings | None = None
        self._settings_source = settings_source
        if settings_source is None:
            self._settings = ConnectionSettings.resolve(settings, api_key, **fields)

    async def get_settings(self) -> ConnectionSettings:
        if self._settings is None:
            assert self._settings_source is not None
            self._settings = await self._settings_source()
        return self._settings

    async def v1_client(self) -> AsyncV1Client:
        """The async v1 client on this connection (see :meth:`CaptainDataClient.v1_client`)."""
        from airflow_provider_captaindata.client.v1 import AsyncV1Client

        settings = await self.get_settings()
        return AsyncV1Client(
            settings.api_key.get_secret_value(),
            base_url=settings.v1_base_url,
            rate_limit_per_second=settings.rate_limit_per_second,
            policy=self.retry_policy,
            transport=self._transport,
        )

    @property
    def _transport(self) -> AsyncTransport:
        transport = self._transports.get(self.retry_policy)
        if transport is None:
            transport = self._transports.setdefault(self.retry_policy, AsyncTransport(self.retry_policy))
        return transport

    async def aclose(self) -> None:
        """Close this event loop's HTTP pool; for loops that end with their work (the fan-out)."""
        await self._transport.aclose()

    async def _acall(
        self,
        version: ApiVersion,
        method: str,
        path_or_url: str,
        gate: Callable[[], Awaitable[Any]] | None = None,
        **kwargs: Any,
    ) -> ApiResponse:
        request = build_request(await self.get_settings(), version, method, path_or_url, **kwargs)
        return await self._transport.send(request, gate)

    async def get_run(self, api_version: str, run_uid: str) -> RunSnapshot:
        """A run of either version (see :meth:`CaptainDataClient.get_run`)."""
        version = get_version(api_version)
        answer = await self._acall(version, "GET", version.run_path.format(run_uid=run_uid))
        return version.snapshot(answer.data)

    async def list_workflow_runs(self, workflow_uid: str, page: int = 0) -> list[RunSnapshot]:
        """``GET /v3/workflows/{uid}/jobs?page=N``: one page of a workflow's runs, newest first
        (whoever started them: this provider, a repeat schedule, the Captain Data app)."""
        answer = await self._acall(V3, "GET", f"/workflows/{workflow_uid}/jobs", params={"page": page})
        return [V3.snapshot(job) for job in answer.data or []]

    async def list_action_runs(
        self,
        *,
        status: Sequence[str] = (),
        action_name: str | None = None,
        execution_mode: str | None = None,
        limit: int = 100,
        offset: int = 0,
        sort: str = "-created_at",
    ) -> list[RunSnapshot]:
        """``GET /v4/runs`` with its filters (``status`` may name several; ``limit`` up to 100)."""
        params = v4_runs_params(
            status=status,
            action_name=action_name,
            execution_mode=execution_mode,
            limit=limit,
            offset=offset,
            sort=sort,
        )
        answer = await self._acall(V4, "GET", "/runs", params=params)
        return [V4.snapshot(run) for run in answer.data or []]

    async def stop_run(self, api_version: str, run_uid: str) -> bool:
        """Stop a run; False when the API version cannot stop runs (v4)."""
        version = get_version(api_version)
        if version.stop_path is None:
            return False
        await self._acall(version, "POST", version.stop_path.format(run_uid=run_uid))
        return True

    async def run_action_live(
        self,
        action: str,
        body: Mapping[str, Any],
        *,
        url: str | None = None,
        gate: Callable[[], Awaitable[Any]] | None = None,
    ) -> ApiResponse:
        """``POST /v4/actions/{name}/run/live`` (or a page URL from ``X-Pagination-Next``).

        ``body`` is the request body, validated by the caller; ``gate`` is the caller's rate
        limiter, awaited before each attempt (retries included). An action with effects is never
        re-sent after an ambiguous failure: ``CaptainDataOutcomeUnknown`` (see ``live_call``)."""
        target = url or f"/actions/{action}/run/live"
        with live_call(action) as idempotent:
            return await self._acall(V4, "POST", target, json=dict(body), gate=gate, idempotent=idempotent)
