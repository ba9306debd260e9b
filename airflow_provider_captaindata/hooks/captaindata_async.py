"""``CaptainDataAsyncHook``: the endpoints that run on an event loop (triggers, live fan-out).

Same connection, retry policy and errors as the blocking
:class:`~airflow_provider_captaindata.hooks.captaindata.CaptainDataHook`; importable from
``airflow_provider_captaindata.hooks.captaindata`` too.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_captaindata.client.settings import ConnectionSettings
from airflow_provider_captaindata.client.statuses import RunSnapshot
from airflow_provider_captaindata.client.transport import ApiResponse, RetryPolicy
from airflow_provider_captaindata.client.transport_async import AsyncTransport
from airflow_provider_captaindata.client.versions import V3, V4, ApiVersion, get_version
from airflow_provider_captaindata.hooks.base import CaptainDataBaseHook, live_call, v4_runs_params

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.v1 import AsyncV1Client

_Read = asyncio.Task[ConnectionSettings]


class CaptainDataAsyncHook(CaptainDataBaseHook):
    """Non-blocking client for triggers and live fan-out: the endpoints that run on an event
    loop. Reads the connection with the async lookup and shares one HTTP pool per loop."""

    _settings: ConnectionSettings | None = None
    _transports: ClassVar[dict[RetryPolicy, AsyncTransport]] = {}
    # The connection reads in flight, per loop and connection id. Triggers deferred together
    # (a mapped task's) all read the same connection at the same moment, and one read costs
    # as much CPU as a few polls (Airflow's lookup hops to threads, parses, masks): they share
    # one. Nothing is kept once it is done, so a changed connection is read afresh.
    _reads: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Read]]] = (
        weakref.WeakKeyDictionary()
    )

    async def get_settings(self) -> ConnectionSettings:
        if self._settings is None:
            reads = self._reads.setdefault(asyncio.get_running_loop(), {})
            conn_id = self.captaindata_conn_id
            read = reads.get(conn_id)
            if read is None:
                read = reads[conn_id] = asyncio.ensure_future(self._read_settings())
                read.add_done_callback(lambda done: _forget(reads, conn_id, done))
            # Shielded: one trigger cancelled must not cancel the read the others wait on.
            settings = self._settings = await asyncio.shield(read)
            return settings
        return self._settings

    async def v1_client(self) -> AsyncV1Client:
        """The async v1 client on this connection (see :meth:`CaptainDataHook.v1_client`)."""
        from airflow_provider_captaindata.client.v1 import AsyncV1Client

        settings = await self.get_settings()
        return AsyncV1Client(
            settings.api_key.get_secret_value(),
            base_url=settings.v1_base_url,
            rate_limit_per_second=settings.rate_limit_per_second,
            policy=self.retry_policy,
            transport=self._transport,
        )

    async def _read_settings(self) -> ConnectionSettings:
        from airflow.providers.common.compat.connection import (
            get_async_connection,
            get_async_extra_dejson,
        )

        conn = await get_async_connection(self.captaindata_conn_id)
        return ConnectionSettings.from_connection(conn, await get_async_extra_dejson(conn))

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
        request = self._request(await self.get_settings(), version, method, path_or_url, **kwargs)
        return await self._transport.send(request, gate)

    async def get_run(self, api_version: str, run_uid: str) -> RunSnapshot:
        """A run of either version (see :meth:`CaptainDataHook.get_run`)."""
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


def _forget(reads: dict[str, _Read], conn_id: str, done: _Read) -> None:
    if reads.get(conn_id) is done:
        del reads[conn_id]
    if not done.cancelled():
        done.exception()  # retrieved here too: every waiter may have been cancelled
