"""Live fan-out: one v4 live call per input, concurrent but paced at the plan's rate.

A fixed pool of ``max_concurrency`` workers pulls inputs from one iterator (memory does not
grow with the number of inputs), each call passes an aiolimiter leaky bucket set to the
connection's ``rate_limit_per_second`` before every attempt (retries included), and rows are
written in input order through a reorder buffer bounded by a window: a worker takes input
``i`` only once every input before ``i - window`` is written, so one slow input near the head
(a ``Retry-After`` of minutes) holds at most ``window`` inputs' rows, never the whole batch.

An action with effects (``catalog.has_effects``) keeps a per-input checkpoint
(:mod:`airflow_provider_captaindata.checkpoint`): a task retry sends only the inputs with no
recorded outcome. The records are read and written in threads: on an object store each is a
round trip, and made on the loop they would pace every worker at the store's latency.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_captaindata.checkpoint import (
    DONE,
    UNKNOWN,
    InputRecords,
    is_retry,
    open_records,
    record_keys,
)
from airflow_provider_captaindata.client.catalog import has_effects
from airflow_provider_captaindata.client.lookups import may_be_since
from airflow_provider_captaindata.client.paging import PageTrail, next_page_url
from airflow_provider_captaindata.client.versions import V4
from airflow_provider_captaindata.exceptions import (
    OUTCOME_UNKNOWN,
    CaptainDataAPIError,
    CaptainDataInputErrors,
    CaptainDataOutcomeUnknown,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook
from airflow_provider_captaindata.launch_identity import lookup_since
from airflow_provider_captaindata.results import open_sink

if TYPE_CHECKING:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

T = TypeVar("T")
INPUT_TAG = "airflow_input_index"
PROGRESS_EVERY_SECONDS = 10.0
# How far ahead of the first unwritten input the workers may get: 256 inputs is ~6 s of calls
# at the fastest plan (40/s), so a slow input stalls the others only past that, while the rows
# held stay a few MB at most; never under 4 per worker, so that workers do not starve.
REORDER_WINDOW = 256
WINDOW_PER_WORKER = 4
# With records on an object store each input also waits on about three round trips (its
# "sending" record, the claim check, its outcome): workers per call in flight, so that the
# calls stay at max_concurrency (measured: tests/benchmarks/test_fanout_s3_records.py).
RECORDS_WORKERS_PER_CALL = 4
MAX_ERRORS_XCOM_BYTES = 262_144  # the input_errors XCom: error texts vary in size, so bytes


def untagged(item: dict[str, Any]) -> dict[str, Any]:
    """The input without an index tag of its own (one it carries as an upstream fan-out's row
    is replaced by its index here when sent)."""
    custom = item.get("custom_data")
    if not isinstance(custom, dict) or INPUT_TAG not in custom:
        return item
    return {**item, "custom_data": {k: v for k, v in custom.items() if k != INPUT_TAG}}


def tag_rows(data: Any, index: int, retag: bool = False) -> list[dict[str, Any]]:
    """The answer as rows, each carrying the index of its input in ``custom_data`` (``retag``:
    rows recorded when the input sat elsewhere in the list get its index now)."""
    rows = data if isinstance(data, list) else [data] if data else []
    for row in rows:
        custom = row.get("custom_data")
        if isinstance(custom, dict):
            if retag or INPUT_TAG not in custom:
                custom[INPUT_TAG] = index
        else:
            row["custom_data"] = {INPUT_TAG: index}
    return rows


@dataclass(frozen=True)
class FanOutSpec:
    """What the fan-out needs of the task, fixed before it starts: the operator builds it
    (``CaptainDataRunActionOperator.fanout_spec``), so this module never reads the operator."""

    action: str
    conn_id: str
    output_path: str | None
    max_xcom_bytes: int
    max_concurrency: int
    max_results: int | None
    on_input_error: str
    body: Callable[[dict[str, Any]], dict[str, Any]]  # the live request body of one input
    hook: CaptainDataHook  # blocking reads (the retry lookup), not the fan-out's calls
    log: Any


class LiveFanOut:
    def __init__(
        self,
        spec: FanOutSpec,
        inputs: list[dict[str, Any]],
        records: InputRecords | None = None,
    ) -> None:
        self.spec = spec
        self.inputs = inputs
        self.records = records
        # Each input's record is found by what is sent but its index (the index goes in the
        # body's custom_data, replacing any the input carries as an upstream fan-out's row):
        # by index, a clear that reorders the inputs would send every one again.
        bodies = [spec.body(untagged(item)) for item in inputs] if records else []
        self.keys = record_keys(spec.action, bodies)
        self.sink = open_sink(spec.output_path, max_xcom_bytes=spec.max_xcom_bytes)
        self.errors: list[dict[str, Any]] = []
        self.done = 0
        self.reused = 0
        self.window = max(REORDER_WINDOW, WINDOW_PER_WORKER * spec.max_concurrency)
        self.most_held = 0  # the most inputs ever waiting in the reorder buffer
        self._waiting: dict[int, list[dict[str, Any]]] = {}
        self._next_to_write = 0
        self._room = asyncio.Condition()
        self._started = time.monotonic()
        self._last_progress = self._started
        self.live_url = ""
        self.in_flight = asyncio.Semaphore(spec.max_concurrency)  # live calls at once
        self.halted = False
        self._record_threads: ThreadPoolExecutor | None = None

    async def run(self) -> None:
        from airflow_provider_captaindata.client.rate import rate_limiter

        hook = CaptainDataAsyncHook(self.spec.conn_id)
        try:
            rate = (await hook.get_settings()).rate_limit_per_second
            limiter = rate_limiter(rate)
            self.live_url = f"{(await hook.get_settings()).v4_base_url}/actions/{self.spec.action}/run/live"
            self.spec.log.info(
                "%s: %s inputs, %s at a time, paced at %s requests/s (the connection's "
                "rate_limit_per_second)%s",
                self.spec.action,
                len(self.inputs),
                self.spec.max_concurrency,
                rate,
                f"; outcomes recorded in {self.records.where}" if self.records else "",
            )
            pending = iter(enumerate(self.inputs))

            async def worker() -> None:
                for index, item in pending:
                    await self.wait_for_room(index)
                    rows = await self.one(hook, limiter.acquire, index, item)
                    await self.complete(index, rows)

            workers = self.spec.max_concurrency
            if self.records is not None and self.records.offload:
                # A worker also waits on its input's records; more workers keep
                # max_concurrency calls in flight meanwhile (self.in_flight bounds the calls).
                workers *= RECORDS_WORKERS_PER_CALL
                self._record_threads = ThreadPoolExecutor(workers, thread_name_prefix="captaindata-records")
            await asyncio.gather(*(worker() for _ in range(min(workers, len(self.inputs)))))
        finally:
            await hook.aclose()
            if self._record_threads is not None:
                self._record_threads.shutdown(wait=False)
        self.progress(force=True)

    async def wait_for_room(self, index: int) -> None:
        """Hold a worker back until ``index`` is within the window of the next input to write."""
        async with self._room:
            await self._room.wait_for(lambda: index < self._next_to_write + self.window)

    async def one(self, hook: CaptainDataAsyncHook, gate: Any, index: int, item: dict[str, Any]) -> list[Any]:
        """One input's rows: from an earlier try's record, else sent (recorded around the call)."""
        custom = {**(item.get("custom_data") or {}), INPUT_TAG: index}
        body = self.spec.body({**item, "custom_data": custom})
        if self.records is None:
            rows, _ = await self.call_one(hook, gate, index, item, body)
            return rows
        key = self.keys[index]
        earlier = await self.recorded(self.records.earlier, key, key)
        if earlier is not None:
            if earlier.get("state") == DONE:
                self.reused += 1
                return tag_rows(list(earlier.get("rows") or []), index, retag=True)
            self.errors.append(_unknown(index, item, earlier_unknown(earlier)))
            return []
        records = self.records

        async def sending() -> None:
            await self.recorded(records.sending, key, key)

        rows, outcome = await self.call_one(hook, gate, index, item, body, before=sending)
        await self.recorded(self.records.outcome, key, key, outcome, rows)
        return rows

    async def recorded(self, call: Callable[..., T], *args: Any) -> T:
        """A records call: in a thread when it is a round trip (object storage), so that the
        other workers keep calling meanwhile."""
        if self._record_threads is not None:
            return await asyncio.get_running_loop().run_in_executor(self._record_threads, call, *args)
        return call(*args)

    async def call_one(
        self,
        hook: CaptainDataAsyncHook,
        gate: Callable[[], Awaitable[Any]],
        index: int,
        item: dict[str, Any],
        body: dict[str, Any],
        *,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[list[Any], str]:
        """The input's rows and its outcome: ``done``, ``unknown`` or ``failed`` (recorded).
        ``before`` (the ``sending`` record) runs once the call has its slot, so a worker that
        dies while waiting for one leaves no record of a call never made; it runs while the
        call waits for its turn at the rate limit."""
        rows: list[dict[str, Any]] = []
        url: str | None = None
        trail = PageTrail(f"{self.spec.action} live pages of input {index}")
        try:
            while True:
                async with self.in_flight:
                    if self.halted:  # another worker failed: no more calls, nor records of calls
                        raise asyncio.CancelledError
                    try:
                        page_gate = gate
                        if before is not None:
                            await asyncio.gather(before(), gate())
                            before, page_gate = None, _after_first(gate)
                        answer = await hook.run_action_live(self.spec.action, body, url=url, gate=page_gate)
                    except (CaptainDataOutcomeUnknown, CaptainDataAPIError, CaptainDataTransportError):
                        raise  # this input's outcome, below
                    except BaseException:
                        self.halted = True  # set before the slot goes to another worker
                        raise
                rows.extend(tag_rows(answer.data, index))
                if self.spec.max_results is not None and len(rows) >= self.spec.max_results:
                    return rows[: self.spec.max_results], DONE
                current = url or self.live_url
                page = answer.data if isinstance(answer.data, list) else None
                next_url = next_page_url(answer.headers, current) if page is not None else None
                url = trail.next_url(current, next_url, len(page or ()))
                if not url:
                    return rows, DONE
        except CaptainDataOutcomeUnknown as exc:
            status = getattr(exc.__cause__, "status_code", None)
            self.errors.append({**_unknown(index, item, str(exc)), "status_code": status})
            return [], UNKNOWN
        except CaptainDataAPIError as exc:
            self.errors.append(
                {
                    "input_index": index,
                    "status_code": exc.status_code,
                    "error_label": exc.error_label,
                    "error_scope": exc.error_scope,
                    "error_ref": exc.error_ref,
                    "message": exc.message,
                    "custom_data": item.get("custom_data"),
                }
            )
        except CaptainDataTransportError as exc:
            self.errors.append(
                {"input_index": index, "status_code": None, "error_label": "TRANSPORT", "message": str(exc)}
            )
        return [], "failed"

    async def complete(self, index: int, rows: list[dict[str, Any]]) -> None:
        self.done += 1
        self._waiting[index] = rows
        self.most_held = max(self.most_held, len(self._waiting))
        if self._next_to_write in self._waiting:
            while self._next_to_write in self._waiting:
                self.sink.add_page(self._waiting.pop(self._next_to_write))
                self._next_to_write += 1
            async with self._room:
                self._room.notify_all()
        self.progress()

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        self.spec.log.info(
            "%s: %s/%s inputs done (%s from an earlier try), %s rows, %s failed, %.1f inputs/s",
            self.spec.action,
            self.done,
            len(self.inputs),
            self.reused,
            self.sink.rows,
            len(self.errors),
            self.done / elapsed,
        )


def _after_first(gate: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """``gate`` for a call whose first attempt already passed it (its retries pass it again)."""
    passed = False

    async def gate_after_first() -> None:
        nonlocal passed
        if passed:
            await gate()
        passed = True

    return gate_after_first


def _unknown(index: int, item: dict[str, Any], message: str) -> dict[str, Any]:
    return {
        "input_index": index,
        "status_code": None,
        "error_label": OUTCOME_UNKNOWN,
        "message": message,
        "custom_data": item.get("custom_data"),
    }


def earlier_unknown(record: dict[str, Any]) -> str:
    return (
        f"{OUTCOME_UNKNOWN}: an earlier try of this task sent it and its outcome is unknown "
        f"({record.get('state')}); not sent again, since that could act twice"
    )


def errors_for_xcom(
    errors: list[dict[str, Any]], max_bytes: int = MAX_ERRORS_XCOM_BYTES
) -> tuple[list[Any], int]:
    """The first errors that fit in ``max_bytes`` of JSON, and how many were left out."""
    kept: list[dict[str, Any]] = []
    size = 2
    for error in errors:
        size += len(json.dumps(error, separators=(",", ":"), default=str)) + 1
        if size > max_bytes:
            break
        kept.append(error)
    return kept, len(errors) - len(kept)


def refuse_unrecorded_retry(spec: FanOutSpec, context: Any) -> None:
    """A retry with no checkpoint store: send nothing if this action ran live since the DAG run
    started (an earlier try may have sent any of the inputs, and the API does not say which).
    "Since" is read with the lookups' margin for Captain Data's clock
    (:func:`~airflow_provider_captaindata.launch_identity.lookup_since`)."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    since = lookup_since(context)
    runs = spec.hook.list_action_runs(action_name=spec.action, execution_mode="LIVE")
    acted = [r.uid for r in runs if may_be_since(V4.created_at(r.model_dump()), since)]
    if acted:
        raise AirflowFailException(
            f"{OUTCOME_UNKNOWN}: {spec.action} acts, and an earlier try may have sent some inputs "
            f"(live runs since this DAG run started: {', '.join(acted[:5])}); nothing was sent again. "
            "No per-input record exists: set output_path (records are kept beside it) or use "
            "Airflow 3.3+ (task_state_store) for retries that send only what is left."
        )


def acting_records(spec: FanOutSpec, context: Any) -> InputRecords | None:
    """The records of an acting action's inputs (None for an action that only reads, or where
    none can be kept), for the fan-out and a single ``input`` alike. A retry without records,
    or whose earlier tries may have kept theirs where it does not look (an output_path
    rendered differently per try), cannot tell what was sent: it fails here, sending nothing,
    if the action ran live since (:func:`refuse_unrecorded_retry`)."""
    if not has_effects(spec.action):
        return None
    records = open_records(context, spec.output_path)
    if is_retry(context) and (records is None or records.may_miss_earlier_tries()):
        refuse_unrecorded_retry(spec, context)
    return records


def run_live_fanout(spec: FanOutSpec, inputs: list[dict[str, Any]], context: Any) -> Any:
    """Run the fan-out; fail after the batch, or hand the errors on, per ``on_input_error``."""
    records = acting_records(spec, context)
    if records is not None:
        records.claim()
    fan_out = LiveFanOut(spec, inputs, records)
    try:
        asyncio.run(fan_out.run())
    except BaseException:
        fan_out.sink.abort()
        raise
    errors = sorted(fan_out.errors, key=lambda e: e["input_index"])
    if errors and spec.on_input_error == "fail":
        fan_out.sink.abort()
        raise CaptainDataInputErrors(errors, len(inputs))
    if errors:
        spec.log.warning(
            "%s of %s inputs failed; continuing (on_input_error='continue')", len(errors), len(inputs)
        )
    kept, left_out = errors_for_xcom(errors)
    if left_out:
        spec.log.warning(
            "input_errors XCom: %s errors left out past %s bytes", left_out, MAX_ERRORS_XCOM_BYTES
        )
    context["ti"].xcom_push(key="input_errors", value=kept)
    # The records stay: this try may still fail after execute() returns (see checkpoint.py).
    return fan_out.sink.finish(action=spec.action, inputs=len(inputs), failed=len(errors))
