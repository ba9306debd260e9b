"""v4 runs, callback records, schedules, workspace, identities, users and integrations.

Lists take the document's query parameters, checked against its rules (``v4_queries.json``):
repeated or comma-separated filters, ``limit`` and ``offset`` within the document's bounds,
up to ten ``sort`` keys with ``-`` for descending, ties in creation order. Workspace,
identities, users and integrations are not in the document: their shapes follow
captaindata-api.md and are kept small.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_captaindata.client.catalog import action_names, get_action
from airflow_provider_captaindata.emulator.errors import (
    ApiError,
    invalid_input,
    json_object_body,
    json_response,
    not_found,
)
from airflow_provider_captaindata.emulator.records import iso
from airflow_provider_captaindata.emulator.state import EmulatorState, stable_uid
from airflow_provider_captaindata.emulator.v4_runs import replay, resume
from airflow_provider_captaindata.emulator.v4_validation import parse_datetime, query_rules, query_values

SCHEDULE_CHANGES = {"pause": ("ACTIVE", "PAUSED"), "resume": ("PAUSED", "ACTIVE")}
INTEGRATION_TITLES = {
    "linkedin": "LinkedIn",
    "salesnavigator": "Sales Navigator",
    "recruiterlite": "LinkedIn Recruiter Lite",
    "googlemaps": "Google Maps",
    "tripadvisor": "Tripadvisor",
    "thefork": "TheFork",
}


def listed(
    request: Request,
    operation: str,
    items: list[dict[str, Any]],
    *,
    filters: Sequence[str],
) -> Response:
    """Filter, sort and page ``items`` (in creation order) by the request's query, checked
    against the document's rules for ``operation``."""
    query = query_values(operation, request.query_params)
    rules = query_rules()[operation]
    for name in filters:
        if query[name]:
            matches = _matcher(query[name], rules[name]["items"].get("format"))
            items = [item for item in items if matches(item.get(name))]
    sort = query["sort"]
    known = set(items[0]) if items else set()
    # Full ties keep creation order in the last key's direction, as if creation were one more
    # key: under -created_at the newest comes first even when two records share a millisecond.
    if sort and sort[-1].startswith("-"):
        items = items[::-1]
    for key in reversed(sort):
        field = key.lstrip("-")
        if known and field not in known:
            raise invalid_input("sort", f"cannot sort by {field!r} (fields: {', '.join(sorted(known))})")
        items.sort(key=_sort_key(field), reverse=key.startswith("-"))
    offset, limit = query["offset"], query["limit"]
    return json_response(items[offset : offset + limit])


def _matcher(wanted: list[str], form: str | None) -> Callable[[Any], bool]:
    if form == "date-time":  # the same instant, however it is written
        instants = {parse_datetime(w) for w in wanted}
        return lambda value: isinstance(value, str) and parse_datetime(value) in instants
    if form == "uuid":
        uids = {w.lower() for w in wanted}
        return lambda value: str(value).lower() in uids
    return lambda value: str(value) in wanted


def _sort_key(field: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    return lambda item: (item.get(field) is not None, item.get(field) if item.get(field) is not None else 0)


def uuid_param(value: str, name: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise invalid_input(name, f"'{name}' must be a UUID, got {value!r}") from None
    return value


class V4Admin:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.identities = [
            {
                "uid": stable_uid(state.seed, "identity", index),
                "name": name,
                "email": email,
                "integrations": [{"name": "linkedin", "status": "connected"}],
                "created_at": "2025-02-01T10:00:00.000Z",
            }
            for index, (name, email) in enumerate(
                (
                    ("Emma Martin", "emma@emulated-workspace.test"),
                    ("Lucas Rossi", "lucas@emulated-workspace.test"),
                )
            )
        ]

    def routes(self) -> list[Route]:
        return [
            Route("/v4/runs/callbacks", self.list_callbacks, methods=["GET"]),
            Route("/v4/runs/callbacks/{uid}", self.get_callback, methods=["GET"]),
            Route("/v4/runs/callbacks/{uid}/replay", self.replay_callback, methods=["POST"]),
            Route("/v4/runs", self.list_runs, methods=["GET"]),
            Route("/v4/runs/{uid}", self.get_run, methods=["GET"]),
            Route("/v4/runs/{uid}/resume", self.resume_run, methods=["POST"]),
            Route("/v4/schedules", self.list_schedules, methods=["GET"]),
            Route("/v4/schedules/{uid}", self.get_schedule, methods=["GET"]),
            Route("/v4/schedules/{uid}/{change}", self.change_schedule, methods=["POST"]),
            Route("/v4/workspaces", self.workspaces, methods=["GET"]),
            Route("/v4/identities", self.list_identities, methods=["GET"]),
            Route("/v4/identities/{uid}", self.get_identity, methods=["GET"]),
            Route("/v4/users", self.list_users, methods=["GET"]),
            Route("/v4/users/{uid}", self.get_user, methods=["GET"]),
            Route("/v4/integrations", self.list_integrations, methods=["GET"]),
        ]

    # -- runs -----------------------------------------------------------------------------------

    async def list_runs(self, request: Request) -> Response:
        return listed(
            request,
            "GET /runs",
            [run.to_dict() for run in self.state.v4_runs.values()],
            filters=("status", "action_name", "execution_mode", "uid", "user_uid", "workspace_uid"),
        )

    def _run(self, uid: str) -> Any:
        run = self.state.v4_runs.get(uuid_param(uid, "run_uid"))
        if run is None:
            raise not_found("run", uid)
        return run

    async def get_run(self, request: Request) -> Response:
        return json_response(self._run(request.path_params["uid"]).to_dict())

    async def resume_run(self, request: Request) -> Response:
        run = self._run(request.path_params["uid"])
        _empty_body(await request.body())
        action = get_action(run.action_name)
        assert action is not None
        resume(self.state, run, action)
        return json_response(run.to_dict())

    # -- callback records -------------------------------------------------------------------------

    async def list_callbacks(self, request: Request) -> Response:
        operation = "GET /runs/callbacks"
        run_uids = query_values(operation, request.query_params)["run_uid"]
        if run_uids:  # the run's own records, back in creation order
            uids = [c for r in run_uids for c in self.state.callbacks_by_run.get(r.lower(), [])]
            records = sorted((self.state.callbacks[u] for u in uids), key=lambda r: r.created)
        else:
            records = list(self.state.callbacks.values())
        return listed(request, operation, [r.to_dict() for r in records], filters=("status",))

    def _callback(self, uid: str) -> Any:
        record = self.state.callbacks.get(uuid_param(uid, "callback_uid"))
        if record is None:
            raise not_found("callback", uid)
        return record

    async def get_callback(self, request: Request) -> Response:
        return json_response(self._callback(request.path_params["uid"]).to_dict())

    async def replay_callback(self, request: Request) -> Response:
        record = self._callback(request.path_params["uid"])
        _empty_body(await request.body())
        action = get_action(self.state.v4_runs[record.run_uid].action_name)
        assert action is not None
        return json_response((await replay(self.state, record, action)).to_dict())

    # -- schedules ------------------------------------------------------------------------------

    async def list_schedules(self, request: Request) -> Response:
        return listed(
            request,
            "GET /schedules",
            [s.to_dict() for s in self.state.schedules.values()],
            filters=(
                "uid", "status", "action_name", "user_uid", "workspace_uid",
                "next_execution_at", "last_executed_at", "created_at", "updated_at",
            ),
        )  # fmt: skip

    def _schedule(self, uid: str) -> Any:
        schedule = self.state.schedules.get(uuid_param(uid, "scheduled_run_uid"))
        if schedule is None:
            raise not_found("scheduled run", uid)
        return schedule

    async def get_schedule(self, request: Request) -> Response:
        return json_response(self._schedule(request.path_params["uid"]).to_dict())

    async def change_schedule(self, request: Request) -> Response:
        schedule = self._schedule(request.path_params["uid"])
        change = request.path_params["change"]
        if change not in ("pause", "resume", "cancel"):
            raise invalid_input("action", f"'{change}' is not one of resume, cancel, pause")
        _empty_body(await request.body())
        allowed: tuple[str, ...]
        if change == "cancel":
            allowed, target = ("ACTIVE", "PAUSED"), "CANCELLED"
        else:
            before, target = SCHEDULE_CHANGES[change]
            allowed = (before,)
        if schedule.status not in allowed:
            raise ApiError(400, f"scheduled run {schedule.uid} is {schedule.status}: cannot {change} it")
        schedule.status = target
        schedule.updated = time.time()
        return json_response(schedule.to_dict())

    # -- workspace, identities, users, integrations -------------------------------------------------

    async def workspaces(self, request: Request) -> Response:
        state = self.state
        return json_response(
            {
                "uid": state.workspace_uid,
                "name": "Emulated Workspace",
                "plan_name": "Growth",
                "credits_left": state.credits_left,
                "credits_max": state.settings.v4_credits,
                "credits_used": round(state.credits_used, 1),
                "created_at": iso(state.started),
            }
        )

    async def list_identities(self, request: Request) -> Response:
        return json_response(self.identities)

    async def get_identity(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        for identity in self.identities:
            if identity["uid"] == uid:
                return json_response(identity)
        raise not_found("identity", uid)

    def _users(self) -> list[dict[str, Any]]:
        return [
            {
                "uid": self.state.user_uid,
                "email": "owner@emulated-workspace.test",
                "first_name": "Olivia",
                "last_name": "Owner",
                "role": "owner",
                "workspace_uid": self.state.workspace_uid,
            }
        ]

    async def list_users(self, request: Request) -> Response:
        return json_response(self._users())

    async def get_user(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        for user in self._users():
            if user["uid"] == uid:
                return json_response(user)
        raise not_found("user", uid)

    async def list_integrations(self, request: Request) -> Response:
        names = sorted({name.split("-", 1)[0] for name in action_names()})
        return json_response(
            [
                {
                    "name": name,
                    "title": INTEGRATION_TITLES.get(name, name),
                    "status": "active",
                    "actions": [a for a in action_names() if a.startswith(name + "-")],
                }
                for name in names
            ]
        )


def _empty_body(raw: bytes) -> None:
    """Bodies of resume, replay and schedule changes: an empty object (no fields allowed)."""
    body = json_object_body(raw, required=False)
    if body:
        field = next(iter(body))
        raise invalid_input(field, f"unknown body field '{field}' (this request takes no fields)")
