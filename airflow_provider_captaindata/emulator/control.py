"""The control API under ``/_emulator/``: reset, faults, forced outcomes, settings, request log.

No authentication and not logged. Anything it does not understand (unknown endpoint or
method, unknown field, bad value) gets a 400 saying why, in the same error body as the API.

It changes what the emulator answers and shows its API key, so a web page in a browser on the
same machine must not reach it: a ``Host`` that is not an IP literal or ``localhost`` (DNS
rebinding) gets 403, and every POST must be ``Content-Type: application/json``, which a page
cannot send to another origin without a CORS preflight (which is never answered): 415 else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_captaindata import __version__
from airflow_provider_captaindata.client.catalog import get_action
from airflow_provider_captaindata.emulator.errors import (
    ApiError,
    error_body,
    json_object_body,
    json_response,
)
from airflow_provider_captaindata.emulator.records import (
    V3_FORCED_STATUSES,
    V4_FORCED_STATUSES,
    Fault,
    Outcome,
)
from airflow_provider_captaindata.emulator.settings import setting_names
from airflow_provider_captaindata.emulator.state import EmulatorState

PREFIX = "/_emulator"
CONTROL_LABEL = "INVALID_CONTROL_REQUEST"
FAULT_FIELDS = {
    "method": str,
    "path": str,
    "times": int,
    "status": int,
    "retry_after": (int, float, str),
    "delay": (int, float),
    "drop": bool,
    "malformed": bool,
    "body": (dict, list),
    "headers": dict,
    "match_body": str,
    "error_label": str,
    "message": str,
    "after": bool,
}
WEBHOOK_FIELDS = {"workflow_uid": str, "url": str}
OUTCOME_FIELDS = {"target": str, "status": str, "error_message": str, "times": int}


def is_local_host(host: str | None) -> bool:
    """An IP literal (a browser page cannot have one rebound to us) or ``localhost``."""
    if not host:
        return False
    if host.startswith("[") and "]" in host:  # [IPv6]:port
        name = host[1 : host.index("]")]
    elif host.count(":") == 1:  # name:port or IPv4:port
        name = host.split(":", 1)[0]
    else:  # a name, an IPv4, or a bare IPv6
        name = host
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_json(content_type: str | None) -> bool:
    return bool(content_type) and str(content_type).split(";", 1)[0].strip().lower() == "application/json"


def bad_control(message: str) -> ApiError:
    return ApiError(400, message, label=CONTROL_LABEL, scope="input")


def _checked_fields(body: dict[str, Any], fields: dict[str, Any], what: str) -> dict[str, Any]:
    for name, value in body.items():
        expected = fields.get(name)
        if expected is None:
            raise bad_control(f"unknown {what} field {name!r} (known: {', '.join(sorted(fields))})")
        if value is None:
            continue
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            raise bad_control(f"{what} field {name!r} has a wrong type: {type(value).__name__}")
    return body


class ControlApi:
    def __init__(self, state: EmulatorState, is_workflow: Callable[[str], bool]) -> None:
        self.state = state
        self.is_workflow = is_workflow
        self.api = Starlette(
            routes=self.routes(),
            exception_handlers={ApiError: self._api_error, HTTPException: self._unknown},
        )
        self.api.router.redirect_slashes = False

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        """The control API behind its Host and Content-Type checks."""
        request = Request(scope)
        problem: ApiError | None = None
        if not is_local_host(request.headers.get("host")):
            problem = ApiError(
                403, "the control API answers only to a loopback Host or an IP address", label=CONTROL_LABEL
            )
        elif request.method == "POST" and not is_json(request.headers.get("content-type")):
            problem = ApiError(
                415,
                "the control API takes JSON bodies only (Content-Type: application/json)",
                label=CONTROL_LABEL,
            )
        if problem is not None:
            await json_response(error_body(problem, self.state.next_error_ref()), problem.status)(
                scope, receive, send
            )
            return
        await self.api(scope, receive, send)

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/info", self.info, methods=["GET"]),
            Route(f"{PREFIX}/reset", self.reset, methods=["POST"]),
            Route(f"{PREFIX}/faults", self.list_faults, methods=["GET"]),
            Route(f"{PREFIX}/faults", self.add_fault, methods=["POST"]),
            Route(f"{PREFIX}/faults", self.clear_faults, methods=["DELETE"]),
            Route(f"{PREFIX}/faults/{{uid}}", self.delete_fault, methods=["DELETE"]),
            Route(f"{PREFIX}/outcomes", self.list_outcomes, methods=["GET"]),
            Route(f"{PREFIX}/outcomes", self.add_outcome, methods=["POST"]),
            Route(f"{PREFIX}/outcomes", self.clear_outcomes, methods=["DELETE"]),
            Route(f"{PREFIX}/config", self.get_config, methods=["GET"]),
            Route(f"{PREFIX}/config", self.set_config, methods=["POST"]),
            Route(f"{PREFIX}/webhooks", self.list_webhooks, methods=["GET"]),
            Route(f"{PREFIX}/webhooks", self.set_webhook, methods=["POST"]),
            Route(f"{PREFIX}/requests", self.list_requests, methods=["GET"]),
            Route(f"{PREFIX}/requests", self.clear_requests, methods=["DELETE"]),
        ]

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return json_response(error_body(exc, self.state.next_error_ref()), exc.status)

    async def _unknown(self, request: Request, exc: Exception) -> Response:
        known = sorted({f"{m} {r.path}" for r in self.routes() for m in (r.methods or ()) if m != "HEAD"})
        error = bad_control(
            f"the control API has no {request.method} {request.url.path} (it has: {'; '.join(known)})"
        )
        return await self._api_error(request, error)

    async def info(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return json_response(
            {
                "base_url": base,
                "v3_url": f"{base}/v3",
                "v4_url": f"{base}/v4",
                "api_key": self.state.api_key,
                "project_uid": self.state.project_uid,
                "seed": self.state.seed,
                "version": __version__,
                "settings": setting_names(),
            }
        )

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return json_response({"reset": True})

    async def list_faults(self, request: Request) -> Response:
        return json_response([f.to_dict() for f in self.state.faults])

    async def add_fault(self, request: Request) -> Response:
        body = _checked_fields(json_object_body(await request.body()), FAULT_FIELDS, "fault")
        for name in ("method", "path"):
            if not body.get(name):
                raise bad_control(f"a fault needs {name!r}")
        if not str(body["path"]).startswith("/"):
            raise bad_control(f"fault path must be a URL path glob starting with '/', got {body['path']!r}")
        effects = [n for n in ("status", "drop", "malformed", "body") if body.get(n) not in (None, False)]
        if len(effects) > 1:
            raise bad_control(f"a fault has one answer: {' and '.join(effects)} cannot go together")
        if not effects and body.get("delay") is None:
            raise bad_control("a fault needs one of status, drop, malformed, body or delay")
        headers = body.get("headers")
        if headers is not None and (
            body.get("body") is None or not all(isinstance(v, str) for v in headers.values())
        ):
            raise bad_control("fault headers go with a body, as a dict of header names to strings")
        status = body.get("status")
        if status is not None and not 100 <= status <= 599:
            raise bad_control(f"fault status must be an HTTP status code, got {status}")
        times = body.get("times", 1)
        if times is not None and times < 1:
            raise bad_control("fault times must be at least 1 (or null for every request)")
        for name in ("delay", "retry_after"):
            value = body.get(name)
            if isinstance(value, int | float) and value < 0:
                raise bad_control(f"fault {name} must not be negative")
        fault = Fault(uid=self.state.ids.uid(), **{**body, "method": body["method"].upper(), "times": times})
        self.state.add_fault(fault)
        return json_response(fault.to_dict())

    async def clear_faults(self, request: Request) -> Response:
        self.state.faults.clear()
        return json_response([])

    async def delete_fault(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        before = len(self.state.faults)
        self.state.faults = [f for f in self.state.faults if f.uid != uid]
        if len(self.state.faults) == before:
            raise bad_control(f"no fault {uid!r}")
        return json_response([f.to_dict() for f in self.state.faults])

    async def list_outcomes(self, request: Request) -> Response:
        return json_response([o.__dict__ for queue in self.state.outcomes.values() for o in queue])

    async def add_outcome(self, request: Request) -> Response:
        body = _checked_fields(json_object_body(await request.body()), OUTCOME_FIELDS, "outcome")
        target, status = body.get("target"), body.get("status")
        if not target or not status:
            raise bad_control("an outcome needs a 'target' (workflow uid or action name) and a 'status'")
        if self.is_workflow(target):
            allowed: tuple[str, ...] = V3_FORCED_STATUSES
            status = status.lower()
        elif get_action(target) is not None:
            allowed = V4_FORCED_STATUSES
            status = status.upper()
        else:
            raise bad_control(f"outcome target {target!r} is neither a v3 workflow uid nor a v4 action name")
        if status not in allowed:
            raise bad_control(
                f"status {body['status']!r} cannot be forced on {target!r} (one of: {', '.join(allowed)})"
            )
        times = body.get("times") or 1
        if times < 1:
            raise bad_control("outcome times must be at least 1")
        outcome = Outcome(target, status, body.get("error_message"), times)
        self.state.add_outcome(outcome)
        return json_response(outcome.__dict__)

    async def clear_outcomes(self, request: Request) -> Response:
        self.state.outcomes.clear()
        return json_response([])

    async def get_config(self, request: Request) -> Response:
        return json_response(self.state.settings.to_dict())

    async def set_config(self, request: Request) -> Response:
        body = json_object_body(await request.body())
        try:
            self.state.configure(body)
        except ValueError as exc:
            raise bad_control(str(exc)) from None
        return json_response(self.state.settings.to_dict())

    async def list_webhooks(self, request: Request) -> Response:
        """Per-workflow webhook URLs and the deliveries made (``{job_uid, kind, status_code}``)."""
        return json_response({"workflows": self.state.v3_webhooks, "sent": self.state.v3_webhooks_sent})

    async def set_webhook(self, request: Request) -> Response:
        """``{workflow_uid, url}``: the workflow's webhook (``url`` null removes it)."""
        body = _checked_fields(json_object_body(await request.body()), WEBHOOK_FIELDS, "webhook")
        workflow_uid, url = body.get("workflow_uid"), body.get("url")
        if not workflow_uid or not self.is_workflow(workflow_uid):
            raise bad_control(f"webhook workflow_uid {workflow_uid!r} is not a v3 workflow uid")
        if url is None:
            self.state.v3_webhooks.pop(workflow_uid, None)
        elif not url.startswith(("http://", "https://")):
            raise bad_control("webhook url must be an http(s) URL")
        else:
            self.state.v3_webhooks[workflow_uid] = url
        return json_response({"workflows": self.state.v3_webhooks})

    async def list_requests(self, request: Request) -> Response:
        method = request.query_params.get("method") or None
        path = request.query_params.get("path") or None
        return json_response(list(self.state.find_requests(method, path)))

    async def clear_requests(self, request: Request) -> Response:
        self.state.requests.clear()
        return json_response([])
