"""v4 async runs: their life (QUEUED, RUNNING, a final status) and their callbacks.

A run POSTs one callback per page of results per input to ``callback.url`` with the
caller's ``callback.headers``: ``{run{run_uid, batch_uid, status}, input, custom_data, error,
results_count, results[]}``. Pages carry ``RUNNING``; the last one carries the final status,
and the run only takes that status once every page has been attempted. Each attempt is a
callback record; a record can be replayed three times.

Forced outcomes shape the pages: FAILED, INVALID and BLOCKED give every input an error and
no results; PARTIAL_SUCCEEDED fails the last input (when there are several); STOPPED
delivers the first half of the inputs only. STOPPED and BLOCKED runs can be resumed: the
inputs that got no results run again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airflow_provider_captaindata.client.catalog import ActionSpec, action_names
from airflow_provider_captaindata.emulator.errors import ApiError
from airflow_provider_captaindata.emulator.fakes import action_row, row_random
from airflow_provider_captaindata.emulator.records import CallbackRecord, Outcome, V4Run
from airflow_provider_captaindata.emulator.state import EmulatorState, stable_uid

log = logging.getLogger(__name__)

MAX_REPLAYS = 3
# The launch answer's status: the document's enum for it is lowercase (pending, running, ...)
# and uncertain; the emulator answers the run status, as GET /runs/{uid} does.
LAUNCH_STATUS = "QUEUED"
ERROR_LABELS = {
    "FAILED": "ACTION_FAILED",
    "PARTIAL_SUCCEEDED": "ACTION_FAILED",
    "INVALID": "INVALID_INPUT",
    "BLOCKED": "NO_VALID_ACCOUNT_CONFIGURED",
    "STOPPED": "RUN_STOPPED",
}
ALL_INPUTS_FAIL = ("FAILED", "INVALID", "BLOCKED")


@dataclass(frozen=True, slots=True)
class Page:
    input_index: int
    page_index: int
    first_row: int
    count: int
    error: dict[str, str] | None = None


def last_error_of(outcome: Outcome | None) -> dict[str, str] | None:
    if outcome is None or outcome.status == "SUCCEEDED":
        return None
    label = ERROR_LABELS.get(outcome.status, "ACTION_FAILED")
    return {"label": label, "message": outcome.error_message or f"the run ended {outcome.status}"}


def create_run(
    state: EmulatorState,
    action: ActionSpec,
    mode: str,
    body: dict[str, Any],
    *,
    status: str,
    outcome: Outcome | None = None,
) -> V4Run:
    now = time.time()
    settings = state.settings
    inputs = body.get("inputs") or ([body["input"]] if "input" in body else [{}])
    callback = body.get("callback") or {}
    run = V4Run(
        id=state.next_run_id(),
        uid=state.ids.uid(),
        action_name=action.name,
        action_id=action_id(action.name),
        execution_mode=mode,
        status=status,
        user_uid=state.user_uid,
        workspace_uid=state.workspace_uid,
        created=now,
        inputs=inputs,
        parameters=dict(body.get("parameters") or {}),
        identity_mode=body.get("identity_mode"),
        callback_url=callback.get("url"),
        callback_headers=dict(callback.get("headers") or {}),
        outcome=outcome,
        rows_per_input=(
            settings.v4_search_total_results if action.returns_array else settings.v4_results_per_input
        ),
        page_size=action.page_size or 0,
    )
    state.v4_runs[run.uid] = run
    return run


def action_id(name: str) -> int:
    """A stable numeric id per action (the document has ``action_id`` integers)."""
    return 1 + action_names().index(name)


def start_async_run(state: EmulatorState, action: ActionSpec, body: dict[str, Any]) -> V4Run:
    outcome = state.take_outcome(action.name)
    run = create_run(state, action, "ASYNC", body, status=LAUNCH_STATUS, outcome=outcome)
    state.spawn(drive_run(state, run, action, list(range(len(run.inputs)))))
    return run


def plan_pages(run: V4Run, indices: Iterable[int]) -> tuple[list[Page], list[int]]:
    """The pages to send for these inputs, and the inputs that will get no results."""
    status = run.outcome.status if run.outcome else "SUCCEEDED"
    indices = list(indices)
    error = last_error_of(run.outcome)
    pages: list[Page] = []
    left_out: list[int] = []
    if status == "STOPPED":
        keep = (len(indices) + 1) // 2
        indices, left_out = indices[:keep], indices[keep:]
    for position, index in enumerate(indices):
        failing = status in ALL_INPUTS_FAIL or (
            status == "PARTIAL_SUCCEEDED" and len(indices) > 1 and position == len(indices) - 1
        )
        if failing:
            pages.append(Page(index, 0, 0, 0, error))
            left_out.append(index)
            continue
        total = run.rows_per_input
        size = run.page_size or max(total, 1)
        if total == 0:
            pages.append(Page(index, 0, 0, 0))
        for page_index, start in enumerate(range(0, total, size)):
            pages.append(Page(index, page_index, start, min(size, total - start)))
    return pages, left_out


def page_body(
    state: EmulatorState, run: V4Run, action: ActionSpec, page: Page, status: str
) -> dict[str, Any]:
    input = run.inputs[page.input_index]
    rows = [
        action_row(
            action.output_fields,
            (state.seed, run.uid, page.input_index, page.first_row + k),
            input,
            echo_input=not action.returns_array,
        )
        for k in range(page.count)
    ]
    return {
        "run": {"run_uid": run.uid, "batch_uid": batch_uid(state, run, page), "status": status},
        "input": input,
        "custom_data": input.get("custom_data"),
        "error": page.error,
        "results_count": page.count,
        "results": rows,
    }


def batch_uid(state: EmulatorState, run: V4Run, page: Page) -> str:
    # One batch per page, as the API reference reads (one callback per page, each record and
    # replay one page); "input" gives all pages of an input one batch uid, the other shape.
    if state.settings.callback_batch_uid == "input":
        return stable_uid(run.uid, "batch", page.input_index)
    return stable_uid(run.uid, "batch", page.input_index, page.page_index)


async def drive_run(state: EmulatorState, run: V4Run, action: ActionSpec, indices: list[int]) -> None:
    """QUEUED for v4_queued_seconds, then RUNNING for at least v4_running_seconds while the
    pages go out, then the final status once the last page has been attempted."""
    settings = state.settings
    queued, running = settings.v4_queued_seconds, settings.v4_running_seconds
    await asyncio.sleep(queued)
    run.status = "RUNNING"
    run.started = run.started or time.time()
    run.updated = time.time()
    started = time.monotonic()
    final = run.outcome.status if run.outcome else "SUCCEEDED"
    pages, left_out = plan_pages(run, indices)
    run.pending_inputs = left_out
    sequence = [(page, "RUNNING") for page in pages[:-1]]
    final_page = pages[-1]
    if settings.callback_reorder and sequence:
        row_random(state.seed, "reorder", run.uid).shuffle(sequence)
        # The final-status page overtakes a few RUNNING pages, as out-of-order HTTP does: it is
        # answered before they are sent, so it arrives before them whatever the concurrency.
        cut = max(0, len(sequence) - 3)
        await _deliver_all(state, run, action, [*sequence[:cut], (final_page, final)])
        await _deliver_all(state, run, action, sequence[cut:])
    else:
        await _deliver_all(state, run, action, sequence)
        await asyncio.sleep(max(0.0, running - (time.monotonic() - started)))
        await deliver(state, run, action, final_page, final)
    await asyncio.sleep(max(0.0, running - (time.monotonic() - started)))
    run.status = final
    run.finished = run.updated = time.time()
    run.last_error = last_error_of(run.outcome)


async def _deliver_all(
    state: EmulatorState, run: V4Run, action: ActionSpec, sequence: list[tuple[Page, str]]
) -> None:
    """Deliver in order with at most ``callback_concurrency`` requests in flight."""
    limit = asyncio.Semaphore(state.settings.callback_concurrency)

    async def one(page: Page, status: str) -> None:
        try:
            await deliver(state, run, action, page, status)
        finally:
            limit.release()

    in_flight: set[asyncio.Task[None]] = set()
    try:
        for page, status in sequence:
            await limit.acquire()
            task = asyncio.ensure_future(one(page, status))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        for task in in_flight:
            task.cancel()


async def deliver(
    state: EmulatorState,
    run: V4Run,
    action: ActionSpec,
    page: Page,
    status: str,
    *,
    parent: CallbackRecord | None = None,
) -> CallbackRecord:
    """One delivery attempt of one page, recorded; faults decided from the seed."""
    settings = state.settings
    record = CallbackRecord(
        uid=state.ids.uid(),
        run_uid=run.uid,
        batch_uid=batch_uid(state, run, page),
        workspace_uid=run.workspace_uid,
        callback_url=run.callback_url or "",
        created=time.time(),
        input_index=page.input_index,
        page_index=page.page_index,
        run_status=status,
        page=page,
        status="RUNNING",
        parent_uid=parent.uid if parent else None,
        retry_count=parent.retry_count if parent else 0,
    )
    state.callbacks[record.uid] = record
    state.callbacks_by_run.setdefault(run.uid, []).append(record.uid)
    if parent is None:
        state.spend_credits(page.count, run.identity_mode)
    attempt = parent.retry_count if parent else 0
    dice = row_random(state.seed, "callback", run.uid, page.input_index, page.page_index, attempt)
    dropped = dice.random() < settings.callback_drop_rate
    duplicated = dice.random() < settings.callback_duplicate_rate
    failed = dice.random() < settings.callback_fail_rate
    if dropped or not run.callback_url:
        record.status, record.http_status = "FAILED", 0
        return record
    body = page_body(state, run, action, page, status)

    async def send() -> None:
        await asyncio.sleep(settings.callback_delay_seconds)
        http_status = await _post(state, run, body)
        if duplicated:
            await _post(state, run, body)
        record.http_status = http_status
        record.status = "SUCCESS" if 200 <= http_status < 300 and not failed else "FAILED"

    if settings.callback_delay_seconds > 0:
        state.spawn(send())  # answered RUNNING; the record tells how it ended
    else:
        await send()
    return record


async def _post(state: EmulatorState, run: V4Run, body: dict[str, Any]) -> int:
    import httpx

    headers = {"Content-Type": "application/json", **run.callback_headers}
    try:
        answer = await state.callback_client().post(
            str(run.callback_url),
            json=body,
            headers=headers,
            timeout=state.settings.callback_timeout_seconds,
        )
    except (httpx.HTTPError, ValueError, OSError) as exc:
        # Not the URL: its path is a token of the receiver's.
        log.debug("Callback of run %s failed: %s", run.uid, type(exc).__name__)
        return 0
    return answer.status_code


async def replay(state: EmulatorState, record: CallbackRecord, action: ActionSpec) -> CallbackRecord:
    """Send a record's page again (a new record, ``parent_uid`` = the original)."""
    root = state.callbacks[record.parent_uid] if record.parent_uid else record
    if root.retry_count >= MAX_REPLAYS:
        raise ApiError(
            400,
            f"callback {root.uid} was already replayed {MAX_REPLAYS} times, the maximum",
            label="MAX_REPLAYS_REACHED",
            scope="input",
        )
    root.retry_count += 1
    run = state.v4_runs[root.run_uid]
    return await deliver(state, run, action, root.page, root.run_status, parent=root)


def resume(state: EmulatorState, run: V4Run, action: ActionSpec) -> None:
    """A STOPPED or BLOCKED run starts again for the inputs that got no results."""
    if run.execution_mode != "ASYNC" or run.status not in ("STOPPED", "BLOCKED"):
        raise ApiError(
            400,
            f"run {run.uid} is {run.status}: only a stopped or blocked async run can be resumed",
            label="INVALID_INPUT",
            scope="input",
        )
    indices = run.pending_inputs or list(range(len(run.inputs)))
    run.status, run.outcome, run.last_error = "QUEUED", None, None
    run.retry_count += 1
    run.finished = None
    run.updated = time.time()
    state.spawn(drive_run(state, run, action, indices))
