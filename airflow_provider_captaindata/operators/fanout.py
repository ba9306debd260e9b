"""Live fan-out: one v4 live call per input, concurrent but paced at the plan's rate.

A fixed pool of ``max_concurrency`` workers pulls inputs from one iterator (memory does not
grow with the number of inputs), each call passes an aiolimiter leaky bucket set to the
connection's ``rate_limit_per_second`` before every attempt (retries included), and rows are
written in input order through a small reorder buffer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_captaindata.action_inputs import next_page_url
from airflow_provider_captaindata.exceptions import (
    OUTCOME_UNKNOWN,
    CaptainDataAPIError,
    CaptainDataInputErrors,
    CaptainDataOutcomeUnknown,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook
from airflow_provider_captaindata.results import open_sink

if TYPE_CHECKING:
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

INPUT_TAG = "airflow_input_index"
PROGRESS_EVERY_SECONDS = 10.0
MAX_ERRORS_IN_XCOM = 1000


def tag_rows(data: Any, index: int) -> list[dict[str, Any]]:
    """The answer as rows, each carrying the index of its input in ``custom_data``."""
    rows = data if isinstance(data, list) else [data] if data else []
    for row in rows:
        custom = row.get("custom_data")
        if isinstance(custom, dict):
            custom.setdefault(INPUT_TAG, index)
        else:
            row["custom_data"] = {INPUT_TAG: index}
    return rows


class LiveFanOut:
    def __init__(self, operator: CaptainDataRunActionOperator, inputs: list[dict[str, Any]]) -> None:
        self.op = operator
        self.inputs = inputs
        self.sink = open_sink(operator.output_path, max_xcom_bytes=operator.max_xcom_bytes)
        self.errors: list[dict[str, Any]] = []
        self.done = 0
        self._waiting: dict[int, list[dict[str, Any]]] = {}
        self._next_to_write = 0
        self._started = time.monotonic()
        self._last_progress = self._started
        self.live_url = ""

    async def run(self) -> None:
        from aiolimiter import AsyncLimiter

        hook = CaptainDataAsyncHook(self.op.captaindata_conn_id)
        rate = (await hook.get_settings()).rate_limit_per_second
        # aiolimiter needs max_rate >= 1: below one call a second, stretch the period instead.
        limiter = AsyncLimiter(max(rate, 1.0), max(rate, 1.0) / rate)
        self.live_url = f"{(await hook.get_settings()).v4_base_url}/actions/{self.op.action}/run/live"
        self.op.log.info(
            "%s: %s inputs, %s at a time, paced at %s requests/s (the connection's rate_limit_per_second)",
            self.op.action,
            len(self.inputs),
            self.op.max_concurrency,
            rate,
        )
        pending = iter(enumerate(self.inputs))

        async def worker() -> None:
            for index, item in pending:
                rows = await self.call_one(hook, limiter.acquire, index, item)
                self.complete(index, rows)

        await asyncio.gather(*(worker() for _ in range(min(self.op.max_concurrency, len(self.inputs)))))
        self.progress(force=True)

    async def call_one(
        self, hook: CaptainDataAsyncHook, gate: Any, index: int, item: dict[str, Any]
    ) -> list[Any]:
        custom = {**(item.get("custom_data") or {}), INPUT_TAG: index}
        body = self.op._body(input={**item, "custom_data": custom})
        rows: list[dict[str, Any]] = []
        url: str | None = None
        try:
            while True:
                answer = await hook.run_action_live(self.op.action, body, url=url, gate=gate)
                rows.extend(tag_rows(answer.data, index))
                if self.op.max_results is not None and len(rows) >= self.op.max_results:
                    return rows[: self.op.max_results]
                current = url or self.live_url
                url = next_page_url(answer.headers, current) if isinstance(answer.data, list) else None
                if not url:
                    return rows
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
        except CaptainDataOutcomeUnknown as exc:
            self.errors.append(
                {
                    "input_index": index,
                    "status_code": getattr(exc.__cause__, "status_code", None),
                    "error_label": OUTCOME_UNKNOWN,
                    "message": str(exc),
                    "custom_data": item.get("custom_data"),
                }
            )
        return []

    def complete(self, index: int, rows: list[dict[str, Any]]) -> None:
        self.done += 1
        self._waiting[index] = rows
        while self._next_to_write in self._waiting:
            self.sink.add_page(self._waiting.pop(self._next_to_write))
            self._next_to_write += 1
        self.progress()

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        self.op.log.info(
            "%s: %s/%s inputs done, %s rows, %s failed, %.1f inputs/s",
            self.op.action,
            self.done,
            len(self.inputs),
            self.sink.rows,
            len(self.errors),
            self.done / elapsed,
        )


def run_live_fanout(
    operator: CaptainDataRunActionOperator, inputs: list[dict[str, Any]], context: Any
) -> Any:
    """Run the fan-out; fail after the batch, or hand the errors on, per ``on_input_error``."""
    fan_out = LiveFanOut(operator, inputs)
    try:
        asyncio.run(fan_out.run())
    except BaseException:
        fan_out.sink.abort()
        raise
    errors = sorted(fan_out.errors, key=lambda e: e["input_index"])
    if errors and operator.on_input_error == "fail":
        fan_out.sink.abort()
        raise CaptainDataInputErrors(errors, len(inputs))
    if errors:
        operator.log.warning(
            "%s of %s inputs failed; continuing (on_input_error='continue')", len(errors), len(inputs)
        )
    context["ti"].xcom_push(key="input_errors", value=errors[:MAX_ERRORS_IN_XCOM])
    return fan_out.sink.finish(action=operator.action, inputs=len(inputs), failed=len(errors))
