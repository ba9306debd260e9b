"""v4 actions, under ``/v4/actions/{name}/run/{live|async|schedule}``.

Bodies are checked against the action catalog derived from the official document. A live
call answers the result itself: one object, or for search/list actions a bare array page of
the action's page size with the next page's full URL in ``X-Pagination-Next`` (the client
POSTs the same body to it). Every live call is also a run record (``execution_mode`` LIVE).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_captaindata.client.catalog import ActionSpec, closest_actions, get_action
from airflow_provider_captaindata.emulator.errors import (
    ApiError,
    int_param,
    invalid_input,
    json_object_body,
    json_response,
)
from airflow_provider_captaindata.emulator.fakes import action_row
from airflow_provider_captaindata.emulator.records import Schedule, iso
from airflow_provider_captaindata.emulator.state import EmulatorState
from airflow_provider_captaindata.emulator.v4_runs import (
    ALL_INPUTS_FAIL,
    action_id,
    create_run,
    last_error_of,
    start_async_run,
)
from airflow_provider_captaindata.emulator.v4_validation import parse_datetime, query_values, validate_body

NEXT_HEADER = "X-Pagination-Next"
PREVIOUS_HEADER = "X-Pagination-Previous"
FIRST_LIVE_PAGE = 1
SCHEDULE_FIELDS = ("cron", "schedule_at", "timezone")


def find_action(name: str) -> ActionSpec:
    action = get_action(name)
    if action is None:
        close = closest_actions(name)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ApiError(404, f"action {name!r} not found{hint}", label="ACTION_NOT_FOUND", scope="input")
    return action


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "offset" or not offset.isdigit():
            raise ValueError(text)
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_input(
            "token", f"query parameter 'token' is not a valid page token: {token!r}"
        ) from None


class V4Actions:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/v4/actions/{name}/run/live", self.live, methods=["POST"]),
            Route("/v4/actions/{name}/run/async", self.run_async, methods=["POST"]),
            Route("/v4/actions/{name}/run/schedule", self.run_schedule, methods=["POST"]),
        ]

    async def _checked(self, request: Request, mode: str) -> tuple[ActionSpec, dict[str, Any]]:
        action = find_action(request.path_params["name"])
        query_values(f"POST /actions/{action.name}/run/{mode}", request.query_params)
        body = json_object_body(await request.body())
        validate_body(action, mode, body, check_patterns=self.state.settings.validate_input_patterns)
        return action, body

    async def live(self, request: Request) -> Response:
        action, body = await self._checked(request, "live")
        settings = self.state.settings
        if settings.live_latency_seconds:
            await asyncio.sleep(settings.live_latency_seconds)
        outcome = self.state.take_outcome(action.name)
        run = create_run(self.state, action, "LIVE", body, status="RUNNING", outcome=outcome)
        run.started = run.created
        run.finished = run.updated = time.time()
        if outcome is not None and outcome.status in (*ALL_INPUTS_FAIL, "STOPPED"):
            run.status, run.last_error = outcome.status, last_error_of(outcome)
            error = run.last_error or {}
            raise ApiError(
                424, error.get("message", "action failed"), label=error.get("label"), scope="integ"
            )
        run.status = outcome.status if outcome else "SUCCEEDED"
        run.last_error = last_error_of(outcome)
        input = body.get("input") or {}
        key = (self.state.seed, "live", action.name, _canonical(input))
        if not action.returns_array:
            row = action_row(action.output_fields, (*key, 0), input, echo_input=True)
            self.state.spend_credits(1, run.identity_mode)
            return json_response(row)
        rows, headers = self._live_page(request, action, key, input)
        self.state.spend_credits(len(rows), run.identity_mode)
        return json_response(rows, headers=headers)

    def _live_page(
        self, request: Request, action: ActionSpec, key: tuple[Any, ...], input: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        total = self.state.settings.v4_search_total_results
        size = action.page_size or max(total, 1)
        headers: dict[str, str] = {}
        if action.pagination == "token":
            token = request.query_params.get("token")
            start = decode_token(token) if token else 0
            next_url = str(request.url.include_query_params(token=encode_token(start + size)))
        else:
            page = int_param(
                request.query_params.get("page"), "page", FIRST_LIVE_PAGE, minimum=FIRST_LIVE_PAGE
            )
            start = (page - FIRST_LIVE_PAGE) * size
            next_url = str(request.url.include_query_params(page=page + 1))
            if action.paginated and page > FIRST_LIVE_PAGE:
                headers[PREVIOUS_HEADER] = str(request.url.include_query_params(page=page - 1))
        if not action.paginated:
            start, size = 0, total
        rows = [
            action_row(action.output_fields, (*key, index), input, echo_input=False)
            for index in range(start, min(start + size, total))
        ]
        if action.paginated:
            if start + size < total:
                headers[NEXT_HEADER] = next_url
            elif self.state.settings.v4_last_page_header != "absent":
                headers[NEXT_HEADER] = "" if self.state.settings.v4_last_page_header == "empty" else "null"
        return rows, headers

    async def run_async(self, request: Request) -> Response:
        action, body = await self._checked(request, "async")
        run = start_async_run(self.state, action, body)
        return json_response(run.launch_answer())

    async def run_schedule(self, request: Request) -> Response:
        action, body = await self._checked(request, "schedule")
        now = time.time()
        schedule = Schedule(
            uid=self.state.ids.uid(),
            action_name=action.name,
            action_id=action_id(action.name),
            user_uid=self.state.user_uid,
            workspace_uid=self.state.workspace_uid,
            body={k: v for k, v in body.items() if k not in SCHEDULE_FIELDS},
            created=now,
            cron=body.get("cron"),
            timezone=body.get("timezone") or ("UTC" if body.get("cron") else None),
        )
        at = parse_datetime(body["schedule_at"]) if "schedule_at" in body else None
        schedule.next_execution = at.timestamp() if at else next_cron(schedule, now)
        self.state.schedules[schedule.uid] = schedule
        if schedule.next_execution is not None:
            self.state.spawn(schedule_loop(self.state, schedule, action))
        return json_response(
            {
                "schedule_uid": schedule.uid,
                "status": schedule.status,
                "cron": schedule.cron,
                "timezone": schedule.timezone,
                "next_execution_at": iso(schedule.next_execution),
                "created_at": iso(schedule.created),
            }
        )


def _canonical(input: dict[str, Any]) -> str:
    # custom_data tags an input without changing what the action finds.
    return json.dumps({k: v for k, v in input.items() if k != "custom_data"}, sort_keys=True, default=str)


def next_cron(schedule: Schedule, after: float) -> float | None:
    """The next time a cron schedule fires (None without ``croniter`` installed)."""
    if not schedule.cron:
        return None
    try:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        from croniter import croniter
    except ImportError:
        return None
    start = datetime.fromtimestamp(after, ZoneInfo(schedule.timezone or "UTC"))
    return float(croniter(schedule.cron, start).get_next(float))


async def schedule_loop(state: EmulatorState, schedule: Schedule, action: ActionSpec) -> None:
    """Start an async run at each execution time while the schedule is active."""
    while schedule.next_execution is not None:
        await asyncio.sleep(max(0.0, schedule.next_execution - time.time()))
        while schedule.status == "PAUSED" and not schedule.cron:
            await asyncio.sleep(0.1)
        if schedule.status == "CANCELLED":
            return
        if schedule.status == "ACTIVE":
            run = start_async_run(state, action, schedule.body)
            run.schedule_uid = schedule.uid
            schedule.run_uids.append(run.uid)
            schedule.last_executed = schedule.updated = time.time()
        schedule.next_execution = next_cron(schedule, time.time())
        if schedule.next_execution is None and schedule.status == "ACTIVE":
            schedule.status = "COMPLETED"
