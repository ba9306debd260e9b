"""The callback receiver: a small Starlette (ASGI) app that stores Captain Data's result pages.

``POST /v1/{launch_key}/{expires}/{token}`` with a callback body
``{run{run_uid, batch_uid, status}, input, custom_data, error, results_count, results[]}``:

* token missing or malformed → 401, wrong or expired → 403 (nothing read, nothing written);
* body larger than ``max_body_bytes`` → 413 (checked on Content-Length and while streaming);
* body not JSON, not the callback shape, or ids that are not UUIDs → 400;
* else the page is written durably and only then answered ``200 {"stored": batch_uid}``, so
  Captain Data's own retry covers a crash between receipt and write.

The same app runs standalone (``captaindata-callback-receiver``, any ASGI server) and mounted in
the Airflow 3 API server (see ``plugin.py``). Blocking work (reading the connection, parsing a
large body, writing a file) runs in worker threads: the event loop is never blocked, which
matters most inside the API server.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airflow_provider_captaindata.callbacks import tokens
from airflow_provider_captaindata.callbacks.storage import CallbackStore, is_uuid
from airflow_provider_captaindata.callbacks.webhooks import WebhookReceiver
from airflow_provider_captaindata.connection import CONN_TYPE, DEFAULT_CONN_ID

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Everything after /v1/ but a well-formed launch key is replaced in the request scope, so access
# logs (uvicorn's, the Airflow API server's) never show a token, even one sent to a wrong path.
_AFTER_V1 = re.compile(r"(/v1/)(?:([0-9a-f]{24})(?=/|$))?.*", re.DOTALL)
_AFTER_V1_RAW = re.compile(rb"(/v1/)(?:([0-9a-f]{24})(?=/|$))?.*", re.DOTALL)
REDACTED = "REDACTED"


class BadCallback(ValueError):
    """The body is not a callback; the message names the problem, never a value."""


@dataclass(frozen=True)
class ReceiverSettings:
    # Not in the repr: this object sits in the receiver's locals, which error reporters and
    # rich tracebacks may record, in the API server where Airflow's log masking does not run.
    secret: str = field(repr=False)
    store: CallbackStore


def parse_callback(data: bytes) -> tuple[str, str, dict[str, Any]]:
    """Check a callback body; return its run uid, batch uid and the body."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise BadCallback("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadCallback("the body must be a JSON object")
    run = body.get("run")
    if not isinstance(run, dict):
        raise BadCallback("'run' must be an object with run_uid, batch_uid and status")
    for name in ("run_uid", "batch_uid"):
        if not is_uuid(run.get(name)):
            raise BadCallback(f"'run.{name}' must be a UUID")
    if not isinstance(run.get("status"), str) or not run["status"]:
        raise BadCallback("'run.status' must be a string")
    results = body.get("results")
    if results is None:
        results = []
    if not isinstance(results, list) or not all(isinstance(row, dict) for row in results):
        raise BadCallback("'results' must be a list of objects")
    count = body.get("results_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise BadCallback("'results_count' must be a non-negative integer")
    if body.get("custom_data") is not None and not isinstance(body["custom_data"], dict):
        raise BadCallback("'custom_data' must be an object")
    return run["run_uid"].lower(), run["batch_uid"].lower(), body


def read_connection_settings(conn_id: str) -> tuple[str | None, str | None]:
    """``callback_secret`` and ``callback_storage`` from an Airflow connection (blocking).

    The receiver runs in server processes (the API server, or standalone), never in a task: the
    core model reads the secrets backends and the metadata DB there on every line, where the
    SDK's ``BaseHook`` cannot read DB connections on task-sdk 1.1.0 (Airflow 3.1.0).
    """
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(conn_id)
    extra = conn.extra_dejson or {}
    prefix = f"extra__{CONN_TYPE}__"  # how Airflow 2 forms may save extra fields

    def extra_field(name: str) -> str | None:
        value = extra.get(name) or extra.get(prefix + name)
        return (str(value).strip() or None) if value else None

    return extra_field("callback_secret"), extra_field("callback_storage")


class CallbackReceiver:
    """Request handling, with the secret and storage resolved once, on first use."""

    def __init__(
        self,
        *,
        secret: str | None,
        storage: str | None,
        conn_id: str,
        max_body_bytes: int,
    ) -> None:
        if max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self._secret = secret
        self._storage = storage
        self.conn_id = conn_id
        self.max_body_bytes = max_body_bytes
        self._settings: ReceiverSettings | None = None
        self._lock = anyio.Lock()

    def _resolve(self) -> ReceiverSettings:
        secret, storage = self._secret, self._storage
        if secret is None or storage is None:
            conn_secret, conn_storage = read_connection_settings(self.conn_id)
            secret = secret if secret is not None else conn_secret
            storage = storage if storage is not None else conn_storage
        if not secret:
            raise ValueError(f"no callback secret: set callback_secret in connection {self.conn_id!r}")
        if not storage:
            raise ValueError(f"no callback storage: set callback_storage in connection {self.conn_id!r}")
        return ReceiverSettings(secret=secret, store=CallbackStore(storage))

    async def settings(self) -> ReceiverSettings:
        if self._settings is None:
            async with self._lock:
                if self._settings is None:
                    # A connection lookup may hit the metadata DB or a secrets backend: never on
                    # the event loop. A failure is not cached, so fixing the connection is enough.
                    self._settings = await anyio.to_thread.run_sync(self._resolve)
                    log.info("Callback receiver storing pages in %s", self._settings.store.uri)
        return self._settings

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def receive(self, request: Request) -> JSONResponse:
        _redact_token(request.scope)
        parts = request.path_params.get("path", "").strip("/").split("/")
        client = request.client.host if request.client else "?"
        if len(parts) != 3 or not all(parts):
            log.warning("Refused a callback from %s: no token in the URL", client)
            return _error(401, "a callback URL is /v1/{launch_key}/{expires}/{token}")
        launch_key, expires, token = parts
        if not tokens.is_launch_key(launch_key):
            log.warning("Refused a callback from %s: malformed launch key", client)
            return _error(401, "malformed callback URL")
        try:
            settings = await self.settings()
        except Exception as exc:
            log.error("Callback receiver is not configured (%s): answering 503", exc)
            return _error(503, "the receiver is not configured")
        verdict = tokens.check(settings.secret, launch_key, expires, token)
        if verdict != "ok":
            # The launch key was validated above and is not secret; the token is never logged.
            log.warning("Refused a callback for launch %s from %s: %s token", launch_key, client, verdict)
            return _error(401 if verdict == "malformed" else 403, f"{verdict} token")

        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(400, "invalid Content-Length")
            if int(length) > self.max_body_bytes:
                log.warning("Refused a %s-byte callback for launch %s: too large", length, launch_key)
                return _error(413, f"the body exceeds {self.max_body_bytes} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body_bytes:  # chunked bodies have no Content-Length
                    log.warning("Refused a callback for launch %s: body over the limit", launch_key)
                    return _error(413, f"the body exceeds {self.max_body_bytes} bytes")
        except ClientDisconnect:
            log.warning("Callback for launch %s: the sender disconnected mid-body", launch_key)
            return _error(400, "incomplete body")

        try:
            run_uid, batch_uid, rows = await anyio.to_thread.run_sync(
                self._store, settings.store, launch_key, bytes(body)
            )
        except BadCallback as exc:
            log.warning("Refused a callback for launch %s: %s", launch_key, exc)
            return _error(400, str(exc))
        except Exception:
            # Not acknowledged, so Captain Data retries and the reconciliation can replay it.
            log.exception("Could not store a callback page for launch %s", launch_key)
            return _error(500, "the page could not be stored")
        log.debug("Stored page %s of run %s (launch %s, %s rows)", batch_uid, run_uid, launch_key, rows)
        return JSONResponse({"stored": batch_uid})

    @staticmethod
    def _store(store: CallbackStore, launch_key: str, data: bytes) -> tuple[str, str, int]:
        run_uid, batch_uid, body = parse_callback(data)
        store.write_page(launch_key, run_uid, batch_uid, data, body)
        return run_uid, batch_uid, len(body.get("results") or [])


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _redact_token(scope: Any) -> None:
    # Routing is done, and the scope dict is shared with the outer middlewares (access logs read
    # it when the response starts or ends): rewriting the path here keeps tokens out of every log.
    def keep_key(match: re.Match[str]) -> str:
        return f"{match.group(1)}{match.group(2) + '/' if match.group(2) else ''}{REDACTED}"

    def keep_key_raw(match: re.Match[bytes]) -> bytes:
        key = match.group(2) + b"/" if match.group(2) else b""
        return match.group(1) + key + REDACTED.encode()

    path = scope.get("path")
    if isinstance(path, str):
        scope["path"] = _AFTER_V1.sub(keep_key, path, count=1)
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        scope["raw_path"] = _AFTER_V1_RAW.sub(keep_key_raw, raw, count=1)


def create_app(
    *,
    secret: str | None = None,
    storage: str | None = None,
    conn_id: str = DEFAULT_CONN_ID,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Starlette:
    """The receiver as an ASGI app.

    :param secret: the callback secret; default: the ``callback_secret`` extra of ``conn_id``.
    :param storage: where pages are stored (ObjectStoragePath URI); default: the
        ``callback_storage`` extra of ``conn_id``.
    :param conn_id: the Captain Data connection read when ``secret`` or ``storage`` is not given
        (lazily, on the first callback).
    :param max_body_bytes: larger callbacks are refused with 413.
    """
    receiver = CallbackReceiver(
        secret=secret, storage=storage, conn_id=conn_id, max_body_bytes=max_body_bytes
    )
    app = Starlette(
        routes=[
            Route("/health", receiver.health, methods=["GET"]),
            Route("/v1/{path:path}", receiver.receive, methods=["POST"]),
            Route("/webhooks/v3/{path:path}", WebhookReceiver(receiver).receive, methods=["POST"]),
        ]
    )
    app.state.receiver = receiver
    return app
