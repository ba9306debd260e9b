"""``CaptainDataAsyncHook``: the endpoints that run on an event loop (triggers, live fan-out).

Same connection, retry policy and errors as the blocking
:class:`~airflow_provider_captaindata.hooks.captaindata.CaptainDataHook`; importable from
``airflow_provider_captaindata.hooks.captaindata`` too. The endpoints are those of
:class:`~airflow_provider_captaindata.client.api_async.CaptainDataAsyncClient`.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cached_property
from typing import ClassVar

from airflow_provider_captaindata.client.api_async import CaptainDataAsyncClient
from airflow_provider_captaindata.client.settings import ConnectionSettings
from airflow_provider_captaindata.hooks.base import CaptainDataBaseHook, delegate_async

_Read = asyncio.Task[ConnectionSettings]


class CaptainDataAsyncHook(CaptainDataBaseHook):
    """Non-blocking client for triggers and live fan-out: every endpoint method of
    :class:`~airflow_provider_captaindata.client.api_async.CaptainDataAsyncClient`, with the
    connection read by Airflow's async lookup (one read shared by the triggers that need it)."""

    _settings: ConnectionSettings | None = None
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

    async def _read_settings(self) -> ConnectionSettings:
        from airflow.providers.common.compat.connection import (
            get_async_connection,
            get_async_extra_dejson,
        )

        conn = await get_async_connection(self.captaindata_conn_id)
        return ConnectionSettings.from_connection(conn, await get_async_extra_dejson(conn))

    @cached_property
    def client(self) -> CaptainDataAsyncClient:
        """The API client; it reads the connection (:meth:`get_settings`) on its first call."""
        return CaptainDataAsyncClient(settings_source=self.get_settings, retry_policy=self.retry_policy)

    v1_client = delegate_async(CaptainDataAsyncClient.v1_client)
    aclose = delegate_async(CaptainDataAsyncClient.aclose)
    get_run = delegate_async(CaptainDataAsyncClient.get_run)
    list_workflow_runs = delegate_async(CaptainDataAsyncClient.list_workflow_runs)
    list_action_runs = delegate_async(CaptainDataAsyncClient.list_action_runs)
    stop_run = delegate_async(CaptainDataAsyncClient.stop_run)
    run_action_live = delegate_async(CaptainDataAsyncClient.run_action_live)


def _forget(reads: dict[str, _Read], conn_id: str, done: _Read) -> None:
    if reads.get(conn_id) is done:
        del reads[conn_id]
    if not done.cancelled():
        done.exception()  # retrieved here too: every waiter may have been cancelled
