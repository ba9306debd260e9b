"""v1 find and enrich for many inputs (1 to 100,000): concurrent calls at the plan's rate,
results in input order, a per-input error report.

Inputs come from a list (of LinkedIn URLs, names, or records such as a search's rows: only the
fields the endpoint takes are sent), a template, an upstream XCom (a list, or the summary of a
results file, which is read), or dynamic task mapping (``.expand(inputs=...)``). Every input
is checked before any call. Calls go through the connection's async v1 client: one aiolimiter
bucket at the plan's rate per worker, ``max_concurrency`` in flight, 429 after ``Retry-After``,
424 tried again a few times. Records are written in input order through a reorder window, so
memory holds at most ``REORDER_WINDOW`` inputs' records, never the whole batch.

Each answered input is recorded (:mod:`airflow_provider_captaindata.checkpoint`): a retried
task reuses the records of the inputs an earlier try enriched and calls only for the others.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_captaindata.checkpoint import DONE, InputRecords, call_mark, open_records
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataError,
    CaptainDataInputErrors,
)
from airflow_provider_captaindata.operators.fanout import MAX_ERRORS_XCOM_BYTES, errors_for_xcom
from airflow_provider_captaindata.operators.v1_base import CaptainDataV1OperatorBase
from airflow_provider_captaindata.params import check_flag, whole_number
from airflow_provider_captaindata.results import ResultSink, aborted_on_error, open_sink

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.v1 import AsyncV1Client

MAX_INPUTS = 100_000
REORDER_WINDOW = 256
PROGRESS_EVERY_SECONDS = 10.0
ON_INPUT_ERROR = ("continue", "fail")


def input_params(endpoint: str, item: Any, index: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The call parameters of one input, checked (CaptainDataConfigError names input and field)."""
    from airflow_provider_captaindata.client.catalog.v1 import v1_operation
    from airflow_provider_captaindata.client.v1 import get_endpoint, prepare

    spec = get_endpoint(endpoint)
    if isinstance(item, str):
        params: dict[str, Any] = {str(spec.single_input): item}
    elif isinstance(item, Mapping):
        known = v1_operation(spec.operation)["query"]
        params = {k: v for k, v in item.items() if k in known and v not in (None, "")}
    else:
        raise CaptainDataConfigError(
            f"inputs[{index}] must be a string ({spec.single_input}) or a dict, got {type(item).__name__}"
        )
    params.update(extra)
    try:
        prepare(spec, params)
    except CaptainDataConfigError as exc:
        raise CaptainDataConfigError(f"inputs[{index}]: {exc}") from None
    return params


def read_inputs(inputs: Any) -> list[Any]:
    """The input list from what the DAG gave: a list, JSON text of one (a rendered template),
    or the summary of an upstream results file (``{"path": ..., "rows": ...}``), read."""
    if isinstance(inputs, str) and inputs.strip().startswith("["):
        try:
            inputs = json.loads(inputs)
        except ValueError as exc:
            raise CaptainDataConfigError(f"inputs: not a JSON list ({exc})") from None
    if isinstance(inputs, Mapping) and isinstance(inputs.get("path"), str):
        from airflow_provider_captaindata.results import object_storage_path

        # read_text, not iteration: Airflow 2.11's file wrapper cannot be iterated line by line.
        text = object_storage_path(inputs["path"]).read_text(encoding="utf-8")
        inputs = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(inputs, str | Mapping):
        inputs = [inputs]
    if not isinstance(inputs, Sequence) or isinstance(inputs, str | bytes):
        raise CaptainDataConfigError(f"inputs must be a list, got {type(inputs).__name__}")
    if not 1 <= len(inputs) <= MAX_INPUTS:
        raise CaptainDataConfigError(f"inputs must hold 1 to {MAX_INPUTS:,} items, got {len(inputs):,}")
    return list(inputs)


class V1FanOut:
    """One call per input on the running loop; records written to ``sink`` in input order."""

    def __init__(
        self,
        client: AsyncV1Client,
        endpoint: str,
        params: list[dict[str, Any]],
        sink: ResultSink,
        *,
        concurrency: int,
        records: InputRecords | None = None,
        log: Any = None,
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.params = params
        self.sink = sink
        self.concurrency = max(1, min(concurrency, len(params)))
        self.records = records
        self.log = log
        self.errors: list[dict[str, Any]] = []
        self.called = 0
        self.reused = 0
        self.window = max(REORDER_WINDOW, 4 * self.concurrency)
        self._held: dict[int, list[dict[str, Any]]] = {}
        self._next_to_write = 0
        self._room = asyncio.Condition()
        self._started = self._last_progress = time.monotonic()

    async def run(self) -> None:
        pending = iter(enumerate(self.params))

        async def worker() -> None:
            for index, params in pending:
                await self._wait_for_room(index)
                await self._complete(index, await self._one(index, params))

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _wait_for_room(self, index: int) -> None:
        """Input ``index`` is taken only once every input before ``index - window`` is written."""
        if index < self._next_to_write + self.window:
            return
        async with self._room:
            await self._room.wait_for(lambda: index < self._next_to_write + self.window)

    def mark(self, params: Mapping[str, Any]) -> str:
        return call_mark(self.endpoint, params)

    async def _one(self, index: int, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.records is not None:
            earlier = self.records.earlier(index, self.mark(params))
            if earlier is not None and earlier.get("state") == DONE:
                self.reused += 1
                return list(earlier.get("rows") or [])
        self.called += 1
        try:
            record = await self.client.call(self.endpoint, **params)
        except CaptainDataError as exc:
            self.errors.append(_error(index, params, exc))
            return []
        rows = [record] if isinstance(record, dict) else list(record or [])
        if self.records is not None:
            self.records.outcome(index, self.mark(params), DONE, rows)
        return rows

    async def _complete(self, index: int, rows: list[dict[str, Any]]) -> None:
        self._held[index] = rows
        if self._next_to_write in self._held:
            while self._next_to_write in self._held:
                self.sink.add_page(self._held.pop(self._next_to_write))
                self._next_to_write += 1
            async with self._room:
                self._room.notify_all()
        self._progress()

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.log is None or (not force and now - self._last_progress < PROGRESS_EVERY_SECONDS):
            return
        self._last_progress = now
        self.log.info(
            "%s: %s/%s inputs done (%s from an earlier try), %s failed, %.1f calls/s",
            self.endpoint,
            self._next_to_write,
            len(self.params),
            self.reused,
            len(self.errors),
            self.called / max(now - self._started, 1e-9),
        )


def _error(index: int, params: Mapping[str, Any], exc: CaptainDataError) -> dict[str, Any]:
    """One failed input as the API described it (424 after the retries: the upstream fetch)."""
    error: dict[str, Any] = {"input_index": index, "input": dict(params), "message": str(exc)}
    if isinstance(exc, CaptainDataAPIError):
        error.update(
            status_code=exc.status_code,
            error_label=exc.error_label,
            error_scope=exc.error_scope,
            error_ref=exc.error_ref,
            data=exc.data,
        )
    else:
        error.update(status_code=None, error_label=type(exc).__name__)
    return error


class CaptainDataV1FanOutOperator(CaptainDataV1OperatorBase):
    """Base of the v1 find and enrich operators (one per endpoint below).

    :param inputs: 1 to 100,000 inputs: strings (the endpoint's main parameter: a LinkedIn URL
        or a name) or dicts of its parameters (records such as a search's rows work: other
        fields are ignored). A list, JSON text, an upstream XCom (a list, or a results-file
        summary ``{"path": ...}``, read). Templated; mappable (``.expand(inputs=...)``).
    :param max_concurrency: calls in flight at once (default 8); the pace is the connection's
        ``rate_limit_per_second`` whatever this is.
    :param on_input_error: ``"continue"`` (default): failed inputs are left out of the results
        and reported in the ``input_errors`` XCom; ``"fail"``: the task fails after the batch,
        naming them.
    """

    endpoint: ClassVar[str]
    credits_per_input: ClassVar[float] = 1.0
    template_fields: Sequence[str] = ("inputs", "output_path")

    def __init__(
        self,
        *,
        inputs: Any,
        max_concurrency: int = 8,
        on_input_error: str = "continue",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        whole_number("max_concurrency", max_concurrency, minimum=1)
        if on_input_error not in ON_INPUT_ERROR:
            raise CaptainDataConfigError(
                f"on_input_error must be one of {', '.join(map(repr, ON_INPUT_ERROR))}, "
                f"got {on_input_error!r}"
            )
        self.inputs = inputs
        self.max_concurrency = max_concurrency
        self.on_input_error = on_input_error

    def extra_params(self) -> dict[str, Any]:
        return {}

    def estimated_credits(self, count: int) -> float:
        return count * self.credits_per_input

    def execute(self, context: Any) -> Any:
        extra = self.extra_params()
        params = [
            input_params(self.endpoint, item, i, extra) for i, item in enumerate(read_inputs(self.inputs))
        ]
        sync_client = self.hook.v1_client()
        before = self.credits_before(sync_client, self.estimated_credits(len(params)))
        records = open_records(context, self.output_path)
        with aborted_on_error(open_sink(self.output_path, max_xcom_bytes=self.max_xcom_bytes)) as sink:
            fan_out = asyncio.run(self._fan_out(params, sink, records))
            errors = sorted(fan_out.errors, key=lambda e: e["input_index"])
            spent = self.credits_spent(sync_client, before)
            self.log.info(
                "%s: %s inputs, %s called, %s reused from an earlier try, %s failed, %s records",
                self.endpoint,
                len(params),
                fan_out.called,
                fan_out.reused,
                len(errors),
                sink.rows,
            )
            if errors and self.on_input_error == "fail":
                raise CaptainDataInputErrors(errors, len(params))
            kept, left_out = errors_for_xcom(errors)
            if left_out:
                self.log.warning(
                    "input_errors XCom: %s errors left out past %s bytes", left_out, MAX_ERRORS_XCOM_BYTES
                )
            self.push(context, "input_errors", kept)
            summary = {
                "endpoint": self.endpoint,
                "inputs": len(params),
                "failed": len(errors),
                "reused": fan_out.reused,
                "credits_spent": spent,
            }
            result = sink.finish(**summary)
        if not self.output_path:
            self.push(context, "summary", {"rows": sink.rows, **summary})
        return self.land(context, result)

    async def _fan_out(
        self, params: list[dict[str, Any]], sink: ResultSink, records: InputRecords | None
    ) -> V1FanOut:
        client = await self._async_hook().v1_client()
        fan_out = V1FanOut(
            client,
            self.endpoint,
            params,
            sink,
            concurrency=self.max_concurrency,
            records=records,
            log=self.log,
        )
        try:
            await fan_out.run()
        finally:
            fan_out._progress(force=True)
            await client.aclose()
        return fan_out

    def _async_hook(self) -> Any:
        from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

        return CaptainDataAsyncHook(self.captaindata_conn_id)


class CaptainDataEnrichPeopleOperator(CaptainDataV1FanOutOperator):
    """Profiles of many people (``GET /v1/people/enrich`` per input: ``li_profile_url``).

    :param full_enrich: also experiences, skills and education (costs twice as much).
    """

    endpoint = "enrich_person"

    def __init__(self, *, full_enrich: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_flag("full_enrich", full_enrich)
        self.full_enrich = full_enrich

    def extra_params(self) -> dict[str, Any]:
        return {"full_enrich": True} if self.full_enrich else {}

    def estimated_credits(self, count: int) -> float:
        return count * self.credits_per_input * (2 if self.full_enrich else 1)


class CaptainDataEnrichCompaniesOperator(CaptainDataV1FanOutOperator):
    """Companies of many LinkedIn company URLs (``GET /v1/companies/enrich``: ``li_company_url``)."""

    endpoint = "enrich_company"


class CaptainDataFindPeopleOperator(CaptainDataV1FanOutOperator):
    """LinkedIn profiles of many people by name (``GET /v1/people/find``: ``full_name``, and
    ``company_name`` in dict inputs)."""

    endpoint = "find_person"


class CaptainDataFindCompaniesOperator(CaptainDataV1FanOutOperator):
    """LinkedIn pages of many companies by name (``GET /v1/companies/find``: ``company_name``)."""

    endpoint = "find_company"
