"""The plan's rate, shared by every call of a worker: one gate per (base URL, rate).

Blocking calls wait on a :class:`~airflow_provider_captaindata.client.transport.SyncRateGate`;
calls on an event loop on an aiolimiter leaky bucket (one per loop: a limiter's waiters belong
to one loop). The live fan-out builds its bucket with :func:`rate_limiter` too.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING

from airflow_provider_captaindata.client.transport import SyncRateGate

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter


# One gate per (origin, rate) and process: every v1 call of a worker shares the plan's rate.
_sync_gates: dict[tuple[str, float], SyncRateGate] = {}
_gates_lock = threading.Lock()


def shared_sync_gate(base_url: str, rate: float) -> SyncRateGate:
    with _gates_lock:
        gate = _sync_gates.get((base_url, rate))
        if gate is None:
            gate = _sync_gates[(base_url, rate)] = SyncRateGate(rate)
        return gate


_async_limiters: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, float], AsyncLimiter]
] = weakref.WeakKeyDictionary()


def rate_limiter(rate: float) -> AsyncLimiter:
    """The live fan-out's leaky bucket: ``rate`` calls a second (aiolimiter needs max_rate >= 1:
    below one call a second, the period is stretched instead)."""
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(max(rate, 1.0), max(rate, 1.0) / rate)


def shared_async_limiter(base_url: str, rate: float) -> AsyncLimiter:
    """One limiter per (origin, rate) on the running loop (a limiter's waiters belong to one loop)."""
    per_loop = _async_limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get((base_url, rate))
    if limiter is None:
        limiter = per_loop[(base_url, rate)] = rate_limiter(rate)
    return limiter
