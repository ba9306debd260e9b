"""The callback receiver: a small Starlette (ASGI) app that stores Captain Data's result pages.

``POST /v1/{launch_key}/{expires}/{token}`` with a callback body
``{run{run_uid, batch_uid, status}, input, custom_data, error, results_count, results[]}``:

* every path is redacted before routing (``redact.py``): no answer, 405 and 404 included,
  puts a token in an access log;
* token missing or malformed → 401, wrong or expired → 403 (nothing read, nothing written);
* receiver not configured → 503, decided once a minute (no connection lookup per request);
* ``max_in_flight`` bodies already being read → the request waits for a place (its body
  unread, so it costs no memory), 503 with Retry-After after ``slot_wait_seconds``;
* body larger than ``max_body_bytes`` → 413 (checked on Content-Length and while streaming),
  not received within ``body_timeout_seconds`` → 408; one value in it (a row of ``results``,
  another top-level member) over ``pages.MAX_VALUE_BYTES`` → 413 too;
* body not JSON, not the callback shape, or ids that are not UUIDs → 400;
* else the page is written durably and only then answered ``200 {"stored": batch_uid}``, so
  Captain Data's own retry covers a crash between receipt and write.

The same app runs standalone (``captaindata-callback-receiver``, any ASGI server) and mounted in
the Airflow 3 API server (see ``plugin.py``). Blocking work (reading the connection, parsing a
large body, writing a file) runs in worker threads: the event loop is never blocked, which
matters most inside the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airflow_provider_captaindata.callbacks import tokens
from airflow_provider_captaindata.callbacks.pages import (
    BadCallback,
    ScannedPage,
    ValueTooLarge,
    scan_callback,
)
from airflow_provider_captaindata.callbacks.redact import ROUTE_PATH, RedactPaths
from airflow_provider_captaindata.callbacks.storage import CallbackStore
from airflow_provider_captaindata.callbacks.webhooks import WebhookReceiver
from airflow_provider_captaindata.client.settings import CONN_TYPE, DEFAULT_CONN_ID

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 8  # callbacks read or written at once, per receiver process
DEFAULT_BODY_TIMEOUT_SECONDS = 60.0  # a sender slower than this holds a slot for nothing
DEFAULT_SLOT_WAIT_SECONDS = 30.0  # a burst of pages waits (bodies unread) rather than fails
SETTINGS_TTL_SECONDS = 60.0  # the connection is read again after this (rotation, no restart)
REFRESH_ON_REFUSAL_SECONDS = 10.0  # a refused token re-reads the connection at most this often
RETRY_AFTER_SECONDS = 5


class NotConfigured(RuntimeError):
    """The receiver has no usable secret or storage; kept for a while, so each refusal is cheap."""


@dataclass(frozen=True)
class ReceiverSettings:
    # Not in the repr: this object sits in the receiver's locals, which error reporters and
    # rich tracebacks may record, in the API server where Airflow's log masking does not run.
    secret: str = field(repr=False)
    store: CallbackStore
    # Rotation: URLs signed with the previous secret stay valid until ``previous_until``.
    previous_secret: str | None = field(default=None, repr=False)
    previous_until: float | None = None

    def secrets(self, now: float | None = None) -> list[str]:
        """The secrets a token may be signed with now: the current one, then the previous one
        while its overlap window lasts."""
        current = [self.secret]
        moment = time.time() if now is None else now
        if self.previous_secret and self.previous_until is not None and moment < self.previous_until:
            current.append(self.previous_secret)
        return current


def read_connection_settings(conn_id: str) -> dict[str, str | None]:
    """The receiver's extras of an Airflow connection (blocking): ``callback_secret``,
    ``callback_storage``, ``callback_secret_previous`` and ``callback_secret_previous_until``.

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

    return {name: extra_field(name) for name in CONNECTION_FIELDS}


CONNECTION_FIELDS = (
    "callback_secret",
    "callback_storage",
    "callback_secret_previous",
    "callback_secret_previous_until",
)


MAX_OVERLAP_SECONDS = 366 * 86400  # beyond the longest callback URL anyone sets on purpose


def parse_until(value: str | float | None, name: str = "callback_secret_previous_until") -> float | None:
    """Unix seconds from a number or an ISO 8601 time (UTC when it has no offset)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be unix seconds or an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class CallbackReceiver:
    """Request handling, with the secret and storage read on first use and again every
    ``settings_ttl`` seconds when they come from a connection (a rotated secret takes effect
    without a restart)."""

    def __init__(
        self,
        *,
        secret: str | None,
        storage: str | None,
        conn_id: str,
        max_body_bytes: int,
        previous_secret: str | None = None,
        previous_until: str | float | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        settings_ttl_seconds: float = SETTINGS_TTL_SECONDS,
        slot_wait_seconds: float = DEFAULT_SLOT_WAIT_SECONDS,
    ) -> None:
        for name, value in (
            ("max_body_bytes", max_body_bytes),
            ("max_in_flight", max_in_flight),
            ("body_timeout_seconds", body_timeout_seconds),
            ("settings_ttl_seconds", settings_ttl_seconds),
            ("slot_wait_seconds", slot_wait_seconds),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self._given = {
            "callback_secret": secret,
            "callback_storage": storage,
            "callback_secret_previous": previous_secret,
            "callback_secret_previous_until": None if previous_until is None else str(previous_until),
        }
        self.conn_id = conn_id
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.body_timeout_seconds = body_timeout_seconds
        # Everything given: nothing to read again (a standalone receiver restarts to rotate).
        self.settings_ttl = settings_ttl_seconds if (secret is None or storage is None) else float("inf")
        self.slot_wait_seconds = slot_wait_seconds
        self.in_flight = 0
        self._slots: anyio.Semaphore | None = None  # made on the receiver's event loop
        self._checker: ThreadPoolExecutor | None = None
        self._settings: ReceiverSettings | NotConfigured | None = None
        self._read_at = float("-inf")
        self._lock = anyio.Lock()

    def _resolve(self) -> ReceiverSettings:
        values = dict(self._given)
        if values["callback_secret"] is None or values["callback_storage"] is None:
            from_conn = read_connection_settings(self.conn_id)
            values = {
                name: given if given is not None else from_conn.get(name) for name, given in values.items()
            }
        secret, storage = values["callback_secret"], values["callback_storage"]
        if not secret:
            raise NotConfigured(f"no callback secret: set callback_secret in connection {self.conn_id!r}")
        if not storage:
            raise NotConfigured(f"no callback storage: set callback_storage in connection {self.conn_id!r}")
        previous = values["callback_secret_previous"]
        until = parse_until(values["callback_secret_previous_until"])
        for name, value in (("callback_secret", secret), ("callback_secret_previous", previous)):
            if value is not None and tokens.weak_secret(value):
                raise NotConfigured(
                    f"{name} of connection {self.conn_id!r} is too weak ({tokens.weak_secret(value)})"
                )
        if previous and until is None:
            raise NotConfigured(
                "callback_secret_previous needs callback_secret_previous_until (end of the overlap window)"
            )
        if previous and until is not None and until > time.time() + MAX_OVERLAP_SECONDS:
            # Milliseconds for seconds would keep the old secret valid for ever.
            raise NotConfigured(
                "callback_secret_previous_until is more than a year away (milliseconds?): the old "
                "secret would keep signing; give unix seconds or an ISO 8601 time"
            )
        return ReceiverSettings(
            secret=secret, store=CallbackStore(storage), previous_secret=previous, previous_until=until
        )

    async def settings(self, *, max_age: float | None = None) -> ReceiverSettings:
        """The settings, read again when older than ``settings_ttl`` (or ``max_age``).

        A failure is kept as long as a success: an unconfigured receiver answers 503 without a
        connection lookup (secrets backend, DB) or an ERROR line per request."""
        limit = self.settings_ttl if max_age is None else min(max_age, self.settings_ttl)
        if self._settings is None or time.monotonic() - self._read_at >= limit:
            async with self._lock:
                if self._settings is None or time.monotonic() - self._read_at >= limit:
                    await self._reload()
        if isinstance(self._settings, NotConfigured):
            raise self._settings
        assert self._settings is not None
        return self._settings

    async def _reload(self) -> None:
        before = self._settings
        try:
            # A connection lookup may hit the metadata DB or a secrets backend: never on the loop.
            fresh: ReceiverSettings | NotConfigured = await anyio.to_thread.run_sync(self._resolve)
        except Exception as exc:
            fresh = exc if isinstance(exc, NotConfigured) else NotConfigured(f"{type(exc).__name__}: {exc}")
        self._settings, self._read_at = fresh, time.monotonic()
        if isinstance(fresh, NotConfigured):
            if not (isinstance(before, NotConfigured) and str(before) == str(fresh)):
                log.error("Callback receiver is not configured (%s): answering 503", fresh)
        elif not isinstance(before, ReceiverSettings):
            log.info("Callback receiver storing pages in %s", fresh.store.uri)
        elif before.secret != fresh.secret or before.previous_secret != fresh.previous_secret:
            log.warning(
                "Callback secret changed in connection %s: URLs signed with the previous secret are %s",
                self.conn_id,
                f"accepted until {fresh.previous_until:.0f} (unix)" if fresh.previous_until else "refused",
            )

    async def verdict(self, check: Callable[[ReceiverSettings], str]) -> tuple[str, ReceiverSettings]:
        """``check``'s verdict with the current settings; a refused token re-reads the
        connection first (at most every ``REFRESH_ON_REFUSAL_SECONDS``), so a URL signed with a
        secret just rotated in is accepted without a restart."""
        settings = await self.settings()
        answer = check(settings)
        if answer == "invalid" and self.settings_ttl != float("inf"):
            fresh = await self.settings(max_age=REFRESH_ON_REFUSAL_SECONDS)
            if fresh is not settings:
                settings, answer = fresh, check(fresh)
        return answer, settings

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def read_body(self, request: Request, limit: int, what: str) -> bytearray | JSONResponse:
        """The body, at most ``limit`` bytes within ``body_timeout_seconds``; else the answer."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _error(400, "invalid Content-Length")
            if int(length) > limit:
                log.warning("Refused a %s-byte %s: too large", length, what)
                return _error(413, f"the body exceeds {limit} bytes")
        body = bytearray()
        try:
            with anyio.fail_after(self.body_timeout_seconds):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:  # chunked bodies have no Content-Length
                        log.warning("Refused a %s: body over the limit", what)
                        return _error(413, f"the body exceeds {limit} bytes")
        except ClientDisconnect:
            log.warning("%s: the sender disconnected mid-body", what)
            return _error(400, "incomplete body")
        except TimeoutError:
            log.warning("%s: the body took over %.0f s", what, self.body_timeout_seconds)
            return _error(408, "the body was not sent in time")
        return body

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[bool]:
        """One of ``max_in_flight`` places for a body being read and stored: True once had,
        False after ``slot_wait_seconds`` (then the answer is 503 with Retry-After and the
        sender retries). A waiting request has not read its body: memory stays bounded."""
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_in_flight)
        slots, placed = self._slots, False
        with anyio.move_on_after(self.slot_wait_seconds):
            await slots.acquire()
            placed = True  # no await between: a timeout cannot lose an acquired place
        if not placed:
            yield False
            return
        self.in_flight += 1
        try:
            yield True
        finally:
            self.in_flight -= 1
            slots.release()

    async def receive(self, request: Request) -> JSONResponse:
        parts = request.scope.get(ROUTE_PATH, "")[len("/v1/") :].strip("/").split("/")
        client = request.client.host if request.client else "?"
        if len(parts) != 3 or not all(parts):
            log.warning("Refused a callback from %s: no token in the URL", client)
            return _error(401, "a callback URL is /v1/{launch_key}/{expires}/{token}")
        launch_key, expires, token = parts
        if not tokens.is_launch_key(launch_key):
            log.warning("Refused a callback from %s: malformed launch key", client)
            return _error(401, "malformed callback URL")
        if tokens.check("0" * tokens.MIN_SECRET_CHARS, launch_key, expires, token) == "malformed":
            # Shape first: a malformed token never costs a settings read.
            log.warning("Refused a callback for launch %s from %s: malformed token", launch_key, client)
            return _error(401, "malformed token")
        try:
            verdict, settings = await self.verdict(
                lambda s: tokens.check_any(s.secrets(), launch_key, expires, token)
            )
        except NotConfigured:
            return _error(503, "the receiver is not configured")
        if verdict != "ok":
            # The launch key was validated above and is not secret; the token is never logged.
            log.warning("Refused a callback for launch %s from %s: %s token", launch_key, client, verdict)
            return _error(401 if verdict == "malformed" else 403, f"{verdict} token")
        async with self.slot() as placed:
            if not placed:
                log.warning(
                    "Callback for launch %s deferred: %s callbacks in flight", launch_key, self.in_flight
                )
                return _busy()
            body = await self.read_body(request, self.max_body_bytes, f"callback for launch {launch_key}")
            if isinstance(body, JSONResponse):
                return body
            try:
                page = await self.check(body)
                await anyio.to_thread.run_sync(self._store, settings.store, launch_key, body, page)
            except BadCallback as exc:
                log.warning("Refused a callback for launch %s: %s", launch_key, exc)
                return _error(413 if isinstance(exc, ValueTooLarge) else 400, str(exc))
            except Exception:
                # Not acknowledged, so Captain Data retries and the reconciliation can replay it.
                log.exception("Could not store a callback page for launch %s", launch_key)
                return _error(500, "the page could not be stored")
        log.debug(
            "Stored page %s of run %s (launch %s, %s rows)",
            page.batch_uid,
            page.run_uid,
            launch_key,
            page.rows,
        )
        return JSONResponse({"stored": page.batch_uid})

    async def check(self, data: bytearray) -> ScannedPage:
        """The body checked (row by row, never built whole) in the receiver's one checking
        thread. The check holds a window of the body's text and one built value (``pages.py``):
        done in whichever worker thread is free, each of up to ``max_in_flight`` threads kept
        about that much more in its own malloc arena after the callback (glibc gives each thread
        an arena). One thread costs no throughput: the check runs under the GIL."""
        if self._checker is None:
            self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="captaindata-callback-check")
        return await asyncio.wrap_future(self._checker.submit(scan_callback, data))

    @staticmethod
    def _store(store: CallbackStore, launch_key: str, data: bytearray, page: ScannedPage) -> None:
        store.write_page(launch_key, page.run_uid, page.batch_uid, data, digest=page.digest)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _busy() -> JSONResponse:
    return JSONResponse(
        {"error": "too many callbacks in flight, retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def create_app(
    *,
    secret: str | None = None,
    storage: str | None = None,
    conn_id: str = DEFAULT_CONN_ID,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    slot_wait_seconds: float = DEFAULT_SLOT_WAIT_SECONDS,
    previous_secret: str | None = None,
    previous_until: str | float | None = None,
) -> Any:
    """The receiver as an ASGI app (a Starlette app behind :class:`~.redact.RedactPaths`).

    :param secret: the callback secret; default: the ``callback_secret`` extra of ``conn_id``.
    :param storage: where pages are stored (ObjectStoragePath URI); default: the
        ``callback_storage`` extra of ``conn_id``.
    :param conn_id: the Captain Data connection read when ``secret`` or ``storage`` is not given
        (on the first callback, then every minute: a rotated secret needs no restart).
    :param max_body_bytes: larger callbacks are refused with 413.
    :param max_in_flight: callbacks read and stored at once; more wait (see
        ``slot_wait_seconds``).
    :param body_timeout_seconds: a body not received within this gets 408.
    :param slot_wait_seconds: how long a callback waits for one of the ``max_in_flight``
        places (its body unread) before it gets 503 with Retry-After.
    :param previous_secret: a secret rotated out, still accepted until ``previous_until``
        (default: the connection's ``callback_secret_previous``).
    :param previous_until: end of the overlap window, unix seconds or ISO 8601.
    """
    receiver = CallbackReceiver(
        secret=secret,
        storage=storage,
        conn_id=conn_id,
        max_body_bytes=max_body_bytes,
        max_in_flight=max_in_flight,
        body_timeout_seconds=body_timeout_seconds,
        slot_wait_seconds=slot_wait_seconds,
        previous_secret=previous_secret,
        previous_until=previous_until,
    )
    app = Starlette(
        routes=[
            Route("/health", receiver.health, methods=["GET"]),
            Route("/v1/{path:path}", receiver.receive, methods=["POST"]),
            Route("/webhooks/v3/{path:path}", WebhookReceiver(receiver).receive, methods=["POST"]),
        ]
    )
    app.state.receiver = receiver
    return RedactPaths(app)
