"""Captain Data v3 webhooks: run created / succeeded / failed, received and stored durably.

Captain Data (its app, not its API) is given one URL per webhook:
``{receiver}/webhooks/v3/{name}/{token}``, where ``token`` is an HMAC-SHA256 of the name with
the connection's ``callback_secret``. It has no expiry in it (the URL is set once, by hand):
it lives as long as the secret, so rotating the secret (``callback_secret_previous`` for an
overlap window, see docs/security.md) is how webhook URLs are renewed and revoked. Accepted
webhooks are bounded per name (``MAX_EVENTS_PER_MINUTE`` per receiver process, 429 beyond).

Each accepted webhook is stored as it was sent, under the callback storage:
``{callback_storage}/webhooks/v3/{name}/{received_ms}-{random}.json``. The names sort by
receipt time, so ``CaptainDataRunFinishedTrigger(mode="webhook")`` reads only what is new. A
duplicate delivery is stored twice; the trigger fires a run once whatever it reads.

The body documented is ``{uid, job_uid, message, project_uid, error, recipe_ref, workflow_uid,
workflow_name, job_name}`` and carries no status field: the trigger does not depend on the
wording of ``message`` (it reads the run's status from the API); :func:`webhook_kind` is the
one place that guesses the kind, for logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiolimiter import AsyncLimiter

from airflow_provider_captaindata.callbacks.storage import CallbackStore, _write_local
from airflow_provider_captaindata.callbacks.tokens import require_strong_secret
from airflow_provider_captaindata.exceptions import CaptainDataConfigError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

URL_PREFIX = "/webhooks/v3"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
# (uncertain) v3 run uids are UUIDs in every sample; anything path-safe is accepted.
JOB_UID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
EVENT_NAME_RE = re.compile(r"([0-9]{13})-[0-9a-f]{8}\.json")
MAX_BODY_BYTES = 64 * 1024
MAX_EVENTS_PER_MINUTE = 120  # per webhook name and receiver process; more get 429
STRING_FIELDS = (
    "uid",
    "message",
    "project_uid",
    "error",
    "recipe_ref",
    "workflow_uid",
    "workflow_name",
    "job_name",
)


class BadWebhook(ValueError):
    """The body is not a v3 webhook; the message names the field, never a value."""


def check_webhook_name(name: object) -> str:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise CaptainDataConfigError(
            "webhook_name must be 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or "
            f"digit, got {name!r}"
        )
    return name


def webhook_token(secret: str, name: str) -> str:
    # "webhook/v3/" keeps these tokens apart from callback tokens signed with the same secret.
    digest = hmac.new(secret.encode(), f"webhook/v3/{name}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def webhook_url_for(base_url: str, secret: str, name: str = "default") -> str:
    """The URL to paste in Captain Data's webhook settings.

    :param base_url: the receiver's public URL, the same as the connection's
        ``callback_base_url`` (e.g. ``https://airflow.example.com/captaindata``).
    :param secret: the connection's ``callback_secret``.
    :param name: a name for this webhook (one per workflow, or one for the workspace).
    """
    check_webhook_name(name)
    require_strong_secret(secret)
    if not base_url or "://" not in base_url:
        raise CaptainDataConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
    return f"{base_url.rstrip('/')}{URL_PREFIX}/{name}/{webhook_token(secret, name)}"


def check_webhook_token(secret: str, name: str, token: str) -> str:
    """``"ok"``, ``"malformed"`` or ``"invalid"`` (compared in constant time)."""
    if not secret or NAME_RE.fullmatch(name) is None or TOKEN_RE.fullmatch(token) is None:
        return "malformed"
    expected = webhook_token(secret, name).encode("ascii")
    return "ok" if hmac.compare_digest(expected, token.encode("ascii")) else "invalid"


def parse_webhook(data: bytes) -> dict[str, Any]:
    """Check a v3 webhook body; return it."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise BadWebhook("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadWebhook("the body must be a JSON object")
    job_uid = body.get("job_uid")
    if not isinstance(job_uid, str) or JOB_UID_RE.fullmatch(job_uid) is None:
        raise BadWebhook("'job_uid' must be a run uid")
    for name in STRING_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadWebhook(f"'{name}' must be a string")
    return body


def webhook_kind(body: dict[str, Any]) -> str:
    """``created``, ``succeeded``, ``failed`` or ``unknown``, guessed from ``error`` and
    ``message`` (uncertain: the body has no status field)."""
    message = str(body.get("message") or "").lower()
    if body.get("error") or "fail" in message:
        return "failed"
    if "succe" in message or "finish" in message:
        return "succeeded"
    if "creat" in message or "start" in message:
        return "created"
    return "unknown"


class WebhookStore:
    """Stored webhooks under a callback storage URI (blocking I/O: call from a thread)."""

    def __init__(self, uri: str) -> None:
        self.files = CallbackStore(uri)

    def folder(self, name: str) -> str:
        root = self.files._root.rstrip("/")
        return f"{root}{URL_PREFIX}/{check_webhook_name(name)}"

    def write_event(self, name: str, data: bytes, received: float | None = None) -> str:
        stamp = int((time.time() if received is None else received) * 1000)
        file_name = f"{stamp:013d}-{uuid.uuid4().hex[:8]}.json"
        folder = self.folder(name)
        final = f"{folder}/{file_name}"
        if self.files.local:
            _write_local(folder, final, data)
        else:
            self.files.fs.makedirs(folder, exist_ok=True)
            self.files.fs.pipe_file(final, data)  # an upload is visible only once complete
        return final

    def list_events(self, name: str, since: float = float("-inf")) -> list[tuple[str, float]]:
        """``(file name, receipt time)`` of the webhooks received at or after ``since``, in order."""
        names = self.files.list_names(self.folder(name))
        found = []
        for file_name in names:
            match = EVENT_NAME_RE.fullmatch(file_name)
            if match and int(match.group(1)) / 1000 >= since:
                found.append((file_name, int(match.group(1)) / 1000))
        return sorted(found)

    def read_event(self, name: str, file_name: str) -> dict[str, Any] | None:
        """A stored webhook, or None when it is gone (removed by a retention rule)."""
        if EVENT_NAME_RE.fullmatch(file_name) is None:
            raise ValueError("not a stored webhook name")
        path = f"{self.folder(name)}/{file_name}"
        try:
            data = self.files.read_bytes(path)
        except FileNotFoundError:
            return None
        return parse_webhook(data)


class WebhookReceiver:
    """``POST /webhooks/v3/{name}/{token}``: 401 without a well-formed token, 403 for a wrong one,
    413 over 64 KiB, 400 for a body that is not a webhook, else stored, then ``200``."""

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks  # the CallbackReceiver: same secret and storage
        self.limiters: dict[str, AsyncLimiter] = {}  # names are checked first: bounded by use

    async def receive(self, request: Request) -> JSONResponse:
        import anyio.to_thread
        from starlette.responses import JSONResponse

        from airflow_provider_captaindata.callbacks.redact import ROUTE_PATH

        def error(status: int, message: str) -> JSONResponse:
            return JSONResponse({"error": message}, status_code=status)

        route_path = request.scope.get(ROUTE_PATH, "")
        parts = route_path[len(URL_PREFIX) + 1 :].strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            return error(401, f"a webhook URL is {URL_PREFIX}/{{name}}/{{token}}")
        name, token = parts
        if check_webhook_token("0" * 16, name, token) == "malformed":
            return error(401, "malformed token")  # before any settings read
        try:
            verdict, settings = await self.callbacks.verdict(lambda s: _check_any(s.secrets(), name, token))
        except Exception:  # NotConfigured: logged once by the receiver
            return error(503, "the receiver is not configured")
        if verdict != "ok":
            log.warning("Refused a webhook for %r: %s token", name, verdict)
            return error(401 if verdict == "malformed" else 403, f"{verdict} token")
        limiter = self.limiters.setdefault(name, AsyncLimiter(MAX_EVENTS_PER_MINUTE, 60))
        if not limiter.has_capacity():
            # Webhooks are few (three per run): a flood is a leaked URL or a loop, and stored
            # events are read by every watcher: bounded per name, per receiver process.
            log.warning("Deferred a webhook for %s: too many this minute", name)
            return JSONResponse(
                {"error": "too many webhooks, retry later"}, status_code=429, headers={"Retry-After": "5"}
            )
        async with self.callbacks.slot() as placed:
            if not placed:
                return JSONResponse(
                    {"error": "busy, retry later"}, status_code=503, headers={"Retry-After": "5"}
                )
            await limiter.acquire()
            body = await self.callbacks.read_body(request, MAX_BODY_BYTES, f"webhook for {name}")
            if isinstance(body, JSONResponse):
                return body
            try:
                parsed = parse_webhook(bytes(body))
                store = WebhookStore(settings.store.uri)
                await anyio.to_thread.run_sync(store.write_event, name, bytes(body))
            except BadWebhook as exc:
                log.warning("Refused a webhook for %s: %s", name, exc)
                return error(400, str(exc))
            except Exception:
                log.exception("Could not store a webhook for %s", name)
                return error(500, "the webhook could not be stored")
        log.info("Stored a %s webhook of run %s (%s)", webhook_kind(parsed), parsed["job_uid"], name)
        return JSONResponse({"stored": parsed["job_uid"]})


def _check_any(secrets: list[str], name: str, token: str) -> str:
    verdicts = [check_webhook_token(secret, name, token) for secret in secrets] or ["malformed"]
    return "ok" if "ok" in verdicts else verdicts[0]
