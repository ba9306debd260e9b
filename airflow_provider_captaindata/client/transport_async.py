"""The async transport: one pooled aiohttp session per event loop, for triggers and the live
fan-out. It sends with the same :class:`~airflow_provider_captaindata.client.transport.RetryPolicy` and turns
answers and failures into the same responses and errors as the sync client in
:mod:`airflow_provider_captaindata.client.transport`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_captaindata.client.body import ACCEPT_ENCODING, CHUNK_BYTES, BodyReader
from airflow_provider_captaindata.client.paging import origin_key
from airflow_provider_captaindata.client.policy import DEFAULT_POLICY, ApiRequest, ApiResponse, RetryPolicy
from airflow_provider_captaindata.client.transport import (
    USER_AGENT,
    decode,
    transport_error,
    trusted_certificates,
)
from airflow_provider_captaindata.exceptions import CaptainDataError

if TYPE_CHECKING:
    import aiohttp


@dataclass
class _LoopPool:
    """One event loop's session and the slots that bound its requests in flight."""

    session: aiohttp.ClientSession
    slots: asyncio.Semaphore
    closer: AsyncGenerator[None, None]  # see _close_with_loop; held here, the loop holds it weakly
    proxies: dict[tuple[str, str, int | None], tuple[Any, Any]] = field(default_factory=dict)

    def proxy_for(self, url: str) -> tuple[Any, Any]:
        """The proxy (and its auth) that HTTPS_PROXY, HTTP_PROXY and NO_PROXY give ``url``'s
        origin, read once per origin. aiohttp's own ``trust_env`` reads them, and ~/.netrc, in
        two thread hops on every request: that alone cost more CPU than the request."""
        key = origin_key(url)
        found = self.proxies.get(key)
        if found is None:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            try:
                found = get_env_proxy_for_url(URL(url))
            except LookupError:
                found = (None, None)
            self.proxies[key] = found
        return found


class AsyncTransport:
    """Non-blocking client for triggers and fan-out: one pooled aiohttp session per event loop.

    Opening a session per poll is what makes other providers' triggers cost ~5x a bare GET
    (and a TLS handshake per poll). Sharing one pool per loop keeps thousands of triggers
    cheap when it holds under load, so:

    * at most ``POOL_SIZE`` requests are in flight per loop (the others wait on a semaphore,
      outside the client): however many triggers poll at the same moment, the pool never
      opens more connections than that, and every connection is kept alive and reused;
    * aiohttp, not httpx: httpcore's pool rescans every queued request against every
      connection on each request and answer (its cost per poll grew with the number of
      triggers), and closes idle connections whenever more than its keep-alive bound exist.
      Even bounded, httpx cost about 2.5x a bare aiohttp GET per poll over TLS.
    """

    # Requests in flight, hence connections, per event loop: enough for the plans' rate
    # limits and thousands of triggers at a 100 ms round trip, few enough that a triggerer
    # holds a small, reused set of TLS connections.
    POOL_SIZE = 50

    # One pool per running loop, whatever the policy: the policy's timeouts travel with each
    # request (see _timeout), so two policies on one loop never share a timeout. A pool holds
    # its loop (aiohttp does), so an entry leaves with its loop: at the loop's shutdown (the
    # pool's closer, see _close_with_loop), and for a loop closed without that shutdown,
    # when the next pool is made.
    _pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy

    @cached_property
    def _timeout(self) -> aiohttp.ClientTimeout:
        import aiohttp

        # Per socket operation, not in total: the wait for a slot is the caller's (a trigger
        # bounds it by its deadline), never a connect timeout.
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.policy.connect_timeout, sock_read=self.policy.read_timeout
        )

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None and not pool.session.closed:
            return pool
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None or pool.session.closed:
                self._forget_ended()
                pool = self._pools[loop] = self._new_pool(loop)
        return pool

    @classmethod
    def _forget_ended(cls) -> None:
        """Drop the pools of closed loops and closed sessions (their loops can then be freed)."""
        for loop, pool in list(cls._pools.items()):
            if loop.is_closed() or pool.session.closed:
                cls._pools.pop(loop, None)

    def _new_pool(self, loop: asyncio.AbstractEventLoop) -> _LoopPool:
        import aiohttp

        session = aiohttp.ClientSession(
            # Only what BodyReader inflates itself, under the size cap.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=self.POOL_SIZE, ssl=_ssl_context()),
            trust_env=False,  # the proxy variables are read once per origin (see proxy_for)
        )

        def forget() -> None:
            if self._pools.get(loop) is pool:
                self._pools.pop(loop, None)

        pool = _LoopPool(session, asyncio.Semaphore(self.POOL_SIZE), _close_with_loop(session, forget))
        return pool

    async def send(
        self, request: ApiRequest, gate: Callable[[], Awaitable[Any]] | None = None
    ) -> ApiResponse:
        """Send with retries; ``gate`` (a rate limiter) is awaited before every attempt."""
        try:
            return await self._attempt(request, gate)
        except CaptainDataError as exc:
            if not self.policy.should_retry(exc, request.idempotent):
                raise
            failed: CaptainDataError | None = exc
        async for attempt in self.policy.async_retrying(request):
            with attempt:
                first, failed = failed, None
                if first is not None:
                    raise first  # see RetryPolicy.retrying
                return await self._attempt(request, gate)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _attempt(self, request: ApiRequest, gate: Callable[[], Awaitable[Any]] | None) -> ApiResponse:
        if gate is not None:
            await gate()
        return await self._send_once(request)

    async def _send_once(self, request: ApiRequest) -> ApiResponse:
        import aiohttp

        pool = self._pool()
        proxy, proxy_auth = pool.proxy_for(request.url)
        try:
            async with (
                pool.slots,
                pool.session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    json=request.json,
                    params=_query(request.params),
                    proxy=proxy,
                    proxy_auth=proxy_auth,
                    allow_redirects=False,  # decode() turns a 3xx into an error (see redirect_error)
                    timeout=self._timeout,
                ) as response,
            ):
                content = await self._read(request, response)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise transport_error(request, exc, sent=False, policy=self.policy) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(request, exc, sent=True, policy=self.policy) from None
        return decode(request, response.status, response.headers, content)

    async def _read(self, request: ApiRequest, response: aiohttp.ClientResponse) -> bytes:
        headers = response.headers
        reader = BodyReader(
            request.method, request.path, headers.get("Content-Encoding"), self.policy.max_response_bytes
        )
        if reader.check_length(headers.get("Content-Length")):
            return await response.read()  # a status poll's case: one read, as before the cap
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            reader.feed(chunk)
        return reader.finish()

    @classmethod
    async def aclose(cls) -> None:
        """Close the running loop's client. A loop that ends with its work (the live fan-out's
        ``asyncio.run``) would otherwise leave its connections open until garbage collection."""
        pool = cls._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.closer.aclose()  # closes the session


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query pairs as text, encoded as httpx did: a list repeats its key, ``True`` is ``true``,
    ``None`` is empty (aiohttp itself refuses bools and lists)."""
    if not params:
        return None

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return [
        (key, text(item))
        for key, value in params.items()
        for item in (value if isinstance(value, list | tuple) else [value])
    ]


def _ssl_context() -> ssl.SSLContext:
    """The certificates both clients trust (see ``transport.trusted_certificates``)."""
    cafile, capath = trusted_certificates()
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _close_with_loop(
    session: aiohttp.ClientSession, forget: Callable[[], None]
) -> AsyncGenerator[None, None]:
    """A started async generator that closes ``session`` when its loop shuts down.

    ``asyncio.run`` (and so the triggerer) closes the async generators it tracks before it
    closes the loop: the session is closed then, not at garbage collection, where aiohttp
    warns of an unclosed session. The caller keeps it; dropped, it would close at once."""

    async def closer() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            forget()  # out of the registry first: nothing then holds the ending loop
            await session.close()

    agen = closer()
    with contextlib.suppress(StopIteration):  # run to its yield: the loop now tracks it
        agen.asend(None).send(None)
    return agen
