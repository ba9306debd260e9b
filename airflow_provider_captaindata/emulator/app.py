"""The emulator's ASGI application: one origin, v1, v3 and v4 under ``/v1``, ``/v3`` and
``/v4``, control under ``/_emulator``.

Every API request goes through the same steps, in the order a real deployment would:
log it, apply a matching fault (the network and load balancer come first), check the API
key, apply the live rate limit, then route it. Errors are always the v4 error body, never a
500 page or a stack trace.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import time
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from airflow_provider_captaindata.emulator.control import PREFIX as CONTROL_PREFIX
from airflow_provider_captaindata.emulator.control import ControlApi
from airflow_provider_captaindata.emulator.errors import ApiError, error_body, json_response, parse_json_body
from airflow_provider_captaindata.emulator.records import Fault, redact_headers
from airflow_provider_captaindata.emulator.state import EmulatorState, TokenBucket
from airflow_provider_captaindata.emulator.v1 import V1Api
from airflow_provider_captaindata.emulator.v3 import V3Api
from airflow_provider_captaindata.emulator.v4 import V4Actions
from airflow_provider_captaindata.emulator.v4_admin import V4Admin

log = logging.getLogger(__name__)

LIVE_PATH = re.compile(r"^/v4/actions/[^/]+/run/live$")
# (uncertain) formats of the rate limit headers: seconds for Retry-After (HTTP), the limit's
# kind, and the Unix time at which a call will be accepted again.
RATE_LIMIT_TYPE = "requests_per_second"
MALFORMED_BODY = b'{"uid": "3f1d2c4b-8a7e-4f60-9b1a-2c3d4e5f6a7b", "status": "RUNNING", "results": [{"full_na'


class EmulatorApp:
    """ASGI callable wrapping the API routes with logging, faults, auth and rate limiting."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.v3 = V3Api(state)
        self.api = Starlette(
            routes=[
                *V1Api(state).routes(),
                *self.v3.routes(),
                *V4Actions(state).routes(),
                *V4Admin(state).routes(),
            ],
            exception_handlers={
                ApiError: self._api_error,
                HTTPException: self._http_error,
                Exception: self._crash,
            },
        )
        self.api.router.redirect_slashes = False
        self.control = ControlApi(state, lambda uid: uid in self.v3.by_uid)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == CONTROL_PREFIX or scope["path"].startswith(CONTROL_PREFIX + "/"):
            await self.control.app(scope, receive, send)
            return
        await self._serve_api(scope, receive, send)

    async def _serve_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        record = _request_record(scope, body, self.state.api_key)
        self.state.log_request(record)
        started = False
        answer_delay = 0.0

        async def send_logged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                # A slow answer: the request was processed, only the answer is late.
                if answer_delay:
                    await asyncio.sleep(answer_delay)
                started = True
                record["status"] = message["status"]
            await send(message)

        async def send_api(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["api_status"] = message["status"]  # processed by the API itself
            await send_logged(message)

        replay = _replay(body, receive)
        try:
            # A GET has no body: a fault's match_body is looked for in its decoded query string.
            fault = self.state.take_fault(method, path, body or unquote_to_bytes(scope["query_string"]))
            if fault is not None:
                record["fault"] = fault.uid
                if fault.after and fault.answers:
                    # The API does the work (creates the run, sends the message); only its
                    # answer is lost or replaced, as when a gateway fails on the way back.
                    await self._serve_unanswered(scope, replay, record)
                if await self._apply_fault(fault, scope, replay, send, send_logged):
                    return
                answer_delay = fault.delay or 0.0
            problem = self._check_auth(path, scope) or self._check_rate(method, path)
            if problem is not None:
                await self._error_response(problem, path)(scope, replay, send_logged)
                return
            await self.api(scope, replay, send_api)
        except Exception:
            # Starlette answered with the error body already (see _crash) and re-raised.
            log.exception("Emulator error on %s %s", method, path)
            if not started:
                error = ApiError(500, "internal error of the emulator", label="INTERNAL_SERVER_ERROR")
                await self._error_response(error, path)(scope, replay, send_logged)

    # -- faults ---------------------------------------------------------------------------------

    async def _serve_unanswered(self, scope: Scope, receive: Receive, record: dict[str, Any]) -> None:
        async def discard(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["api_status"] = message["status"]  # what the API did; the client never sees it

        problem = self._check_auth(scope["path"], scope) or self._check_rate(scope["method"], scope["path"])
        if problem is None:
            try:
                await self.api(scope, receive, discard)
            except Exception:  # the fault's answer goes out whatever the API did
                log.exception("Emulator error before an 'after' fault on %s", scope["path"])

    async def _apply_fault(
        self, fault: Fault, scope: Scope, receive: Receive, raw_send: Send, send: Send
    ) -> bool:
        """Answer as the fault says (after its delay); False for a delay alone, which lets the
        request be served and only holds its answer back."""
        if not fault.answers:
            return False
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            if await _drop_connection(raw_send):
                return True
            raise RuntimeError("cannot drop the connection under this server: answering 500 instead")
        if fault.malformed:
            response = Response(MALFORMED_BODY, status_code=200, media_type="application/json")
            await response(scope, receive, send)
            return True
        if fault.body is not None:
            await json_response(fault.body, headers=fault.headers)(scope, receive, send)
            return True
        if fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            error = ApiError(
                fault.status,
                fault.message or f"fault injected by the emulator ({fault.status})",
                label=fault.error_label,
                headers=headers,
            )
            await self._error_response(error, scope["path"])(scope, receive, send)
        return True

    # -- auth and rate limit ----------------------------------------------------------------------

    def _check_auth(self, path: str, scope: Scope) -> ApiError | None:
        headers = _headers(scope)
        if path.startswith("/v3/") or path == "/v3":
            return self._check_v3(headers)
        if path.startswith(("/v4/", "/v1/")) or path in ("/v4", "/v1"):
            return self._check_v4(headers)
        return None

    def _key_ok(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode(), self.state.api_key.encode())

    def _check_v3(self, headers: dict[str, str]) -> ApiError | None:
        authorization = headers.get("authorization", "")
        key = headers.get("x-api-key")
        if authorization.lower().startswith("x-api-key "):
            key = authorization[len("x-api-key ") :].strip()
        if not self._key_ok(key):
            how = "send 'Authorization: x-api-key <API key>' (or 'x-api-key: <API key>')"
            what = "missing API key" if key is None else "invalid API key"
            return ApiError(401, f"{what}: {how}", label="UNAUTHORIZED")
        project = headers.get("x-project-id")
        if project is None:
            return ApiError(401, "missing x-project-id header: every v3 call needs the project uid")
        if not hmac.compare_digest(project.encode(), self.state.project_uid.encode()):
            return ApiError(401, "x-project-id is not the project of this API key", label="UNAUTHORIZED")
        return None

    def _check_v4(self, headers: dict[str, str]) -> ApiError | None:
        key = headers.get("x-api-key")
        if key is None:
            return ApiError(401, "missing X-API-Key header", label="UNAUTHORIZED")
        if not self._key_ok(key):
            return ApiError(401, "invalid API key", label="UNAUTHORIZED")
        return None

    def _rate_bucket(self, method: str, path: str) -> tuple[TokenBucket | None, str]:
        if method == "POST" and LIVE_PATH.match(path):
            return self.state.rate_bucket, "live requests per second"
        if path == "/v1/quotas":
            return self.state.v1_quotas_bucket, "quota requests per second"
        if path.startswith("/v1/"):
            return self.state.v1_bucket, "v1 requests per second"
        return None, ""

    def _check_rate(self, method: str, path: str) -> ApiError | None:
        bucket, what = self._rate_bucket(method, path)
        if bucket is None:
            return None
        wait = bucket.take()
        if wait <= 0:
            return None
        return ApiError(
            429,
            f"rate limit of {bucket.rate:g} {what} exceeded",
            label="RATE_LIMIT_EXCEEDED",
            headers={
                "Retry-After": str(max(1, math.ceil(wait))),
                "X-RateLimit-Type": RATE_LIMIT_TYPE,
                "X-RateLimit-Limit": f"{bucket.rate:g}",
                "X-RateLimit-Reset": f"{time.time() + wait:.3f}",
            },
        )

    # -- error answers --------------------------------------------------------------------------

    def _error_response(self, error: ApiError, path: str) -> Response:
        body = error_body(error, self.state.next_error_ref())
        if path.startswith("/v1/"):
            body["data"] = error.data  # v1's error body adds `data` to v4's
        return json_response(body, error.status, error.headers)

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return self._error_response(exc, request.url.path)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            error = ApiError(405, f"{request.method} is not allowed on {request.url.path}")
        else:
            error = ApiError(exc.status_code, f"no such endpoint: {request.method} {request.url.path}")
        return self._error_response(error, request.url.path)

    async def _crash(self, request: Request, exc: Exception) -> Response:
        return self._error_response(ApiError(500, "internal error of the emulator"), request.url.path)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that gives the already-read body once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _request_record(scope: Scope, body: bytes, own_key: str) -> dict[str, Any]:
    query = {
        k: v[0] if len(v) == 1 else v for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()
    }
    parsed: Any = None
    if body:
        try:
            parsed = parse_json_body(body)
        except ApiError:
            parsed = body.decode("utf-8", errors="replace")
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": query,
        "headers": redact_headers(_headers(scope), own_key),
        "body": parsed,
        "status": None,
        "api_status": None,
        "time": time.time(),
        "fault": None,
    }


async def _drop_connection(send: Send) -> bool:
    """Close the TCP connection without an answer (the client sees a reset connection).

    ASGI has no way to do that: the transport is reached through uvicorn's request cycle,
    which ``send`` is a bound method of. False when the server is not uvicorn."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return False
    transport.abort()
    # Let connection_lost() run, so uvicorn knows the client is gone and answers nothing.
    for _ in range(3):
        await asyncio.sleep(0)
    return True
