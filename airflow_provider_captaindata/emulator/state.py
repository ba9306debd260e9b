"""The emulator's whole state, seeded and resettable.

Everything here is read and changed from the server's event loop only (the control API is
HTTP too), so there are no locks. The fixed world (workflows, identities, the key's user)
has uids derived from the seed alone; what requests create (runs, callbacks, schedules,
faults) takes uids from a seeded generator that restarts at ``reset()``: the same requests
after a reset give the same uids.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from airflow_provider_captaindata.emulator.records import (
    CLOCK,
    CallbackRecord,
    Fault,
    Outcome,
    Schedule,
    V3Job,
    V4Run,
)
from airflow_provider_captaindata.emulator.settings import V1_TIER_RATES, Settings

log = logging.getLogger(__name__)


class Ids:
    """Deterministic UUID4 strings from a seed."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)

    def uid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def stable_uid(*parts: object) -> str:
    """A UUID that depends only on ``parts`` (batch uids, seeded objects)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "captaindata-emulator:" + ":".join(map(str, parts))))


class TokenBucket:
    """Capacity ``rate`` (at least one call), refilled at ``rate`` tokens a second: a client
    pacing itself at exactly the rate is never refused, a burst above it is."""

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = max(rate if capacity is None else capacity, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class EmulatorState:
    def __init__(self, api_key: str, project_uid: str, seed: int) -> None:
        self.api_key = api_key
        self.project_uid = project_uid
        self.seed = seed
        world = Ids(f"world:{seed}")
        self.workspace_uid = project_uid
        self.user_uid = world.uid()
        self.started = time.time()
        self.tasks: set[asyncio.Task[Any]] = set()
        self._callback_client: Any = None
        self.reset()

    def reset(self) -> None:
        """Back to the seeded initial state: runs, faults, outcomes, settings and log cleared."""
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        self.settings = Settings()
        CLOCK["skew_seconds"] = self.settings.clock_skew_seconds
        self.ids = Ids(f"runtime:{self.seed}")
        self.faults: list[Fault] = []
        self.outcomes: dict[str, collections.deque[Outcome]] = {}
        self.requests: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.settings.request_log_limit
        )
        self.v3_jobs: dict[str, V3Job] = {}
        self.v3_webhooks: dict[str, str] = {}  # workflow uid -> webhook URL of that workflow
        self.v3_webhooks_sent: list[dict[str, Any]] = []  # {job_uid, kind, status_code}
        self.v3_tasks_used = 0
        self.v4_runs: dict[str, V4Run] = {}
        self.v4_run_counter = 1000
        self.callbacks: dict[str, CallbackRecord] = {}
        self.callbacks_by_run: dict[str, list[str]] = {}
        self.schedules: dict[str, Schedule] = {}
        self.credits_used = 0.0
        self.rate_bucket: TokenBucket | None = None
        self.v1_bucket: TokenBucket | None = None
        self.v1_quotas_bucket: TokenBucket | None = None
        self.error_counter = 0

    # -- settings ------------------------------------------------------------------------------

    def configure(self, changes: dict[str, Any]) -> None:
        self.settings.update(changes)
        CLOCK["skew_seconds"] = self.settings.clock_skew_seconds
        if "rate_limit_per_second" in changes:
            rate = self.settings.rate_limit_per_second
            self.rate_bucket = TokenBucket(rate) if rate else None
        if "v1_plan" in changes:
            plan = self.settings.v1_plan
            self.v1_bucket = TokenBucket(V1_TIER_RATES[plan]) if plan else None
        if "v1_quotas_per_minute" in changes:
            per_minute = self.settings.v1_quotas_per_minute
            # A minute's worth of calls may come at once; then one every 60/per_minute seconds.
            self.v1_quotas_bucket = TokenBucket(per_minute / 60, capacity=per_minute) if per_minute else None
        if "request_log_limit" in changes:
            self.requests = collections.deque(self.requests, maxlen=self.settings.request_log_limit)

    # -- faults and outcomes ---------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self, method: str, path: str, body: bytes) -> Fault | None:
        """The first fault (in the order added) still matching this request, counted as used."""
        for fault in self.faults:
            if fault.matches(method, path, body):
                fault.hits += 1
                return fault
        return None

    def add_outcome(self, outcome: Outcome) -> None:
        self.outcomes.setdefault(outcome.target, collections.deque()).append(outcome)

    def take_outcome(self, target: str) -> Outcome | None:
        """The forced outcome of the next run of ``target``, if any (one of its ``times``)."""
        queue = self.outcomes.get(target)
        if not queue:
            return None
        outcome = queue[0]
        outcome.times -= 1
        if outcome.times <= 0:
            queue.popleft()
        return Outcome(outcome.target, outcome.status, outcome.error_message, 1)

    # -- request log ----------------------------------------------------------------------------

    def log_request(self, record: dict[str, Any]) -> None:
        self.requests.append(record)

    def find_requests(self, method: str | None, path: str | None) -> Iterator[dict[str, Any]]:
        import fnmatch

        for record in self.requests:
            if method and record["method"] != method.upper():
                continue
            if path and not fnmatch.fnmatchcase(record["path"], path):
                continue
            yield record

    def next_error_ref(self) -> str:
        self.error_counter += 1
        return f"ERR-{10000 + self.error_counter}"

    # -- v4 bookkeeping -------------------------------------------------------------------------

    def next_run_id(self) -> int:
        self.v4_run_counter += 1
        return self.v4_run_counter

    @property
    def credits_left(self) -> int:
        return max(0, int(self.settings.v4_credits - self.credits_used))

    def spend_credits(self, results: int, identity_mode: str | None) -> None:
        # Managed identities cost 1.5 credits a result (captaindata-api.md).
        self.credits_used += results * (1.5 if identity_mode == "managed" else 1.0)

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        """Run ``coroutine`` in the background; reset() and shutdown cancel it."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Background task of the emulator failed", exc_info=task.exception())

    def callback_client(self) -> Any:
        """One httpx.AsyncClient for callback deliveries, made on the server's loop."""
        if self._callback_client is None:
            import httpx

            # A server closes a connection idle past its keep-alive (uvicorn 5 s, gunicorn 2 s);
            # a request sent on it at that moment gets no answer and a clean page is recorded
            # FAILED. Idle connections are dropped well before that.
            self._callback_client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=1.0)
            )
        return self._callback_client

    async def aclose(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._callback_client is not None:
            await self._callback_client.aclose()
            self._callback_client = None
