"""The v4 error body, which the emulator answers for every error of both API versions.

``{error_label, error_scope, error_ref, message, status_code, params}``: the v3 error body is
not documented, so v3 uses the v4 shape too (the API reference says clients should parse it
when present). Labels and scopes the document does not list are choices, kept here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

DEFAULT_LABELS = {
    400: "INVALID_INPUT",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "UNPROCESSABLE_ENTITY",
    424: "ACTION_FAILED",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}
# The document's scope enum is input, integ, param, config; the guides add auth and server.
DEFAULT_SCOPES = {401: "auth", 403: "auth", 424: "integ", 429: "config"}


def default_label(status: int) -> str:
    return DEFAULT_LABELS.get(status, "CLIENT_ERROR" if status < 500 else "SERVER_ERROR")


def default_scope(status: int) -> str:
    return DEFAULT_SCOPES.get(status, "input" if status < 500 else "server")


class ApiError(Exception):
    """Raised by a handler to answer an error body; ``params`` values must be strings."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        label: str | None = None,
        scope: str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.label = label or default_label(status)
        self.scope = scope or default_scope(status)
        self.params = dict(params) if params else None
        self.headers = dict(headers or {})
        self.data = dict(data) if data else None  # v1 only: more about the error


def invalid_input(field: str, message: str) -> ApiError:
    """400 INVALID_INPUT about one field (named in the message and in ``params.field``)."""
    return ApiError(400, message, label="INVALID_INPUT", scope="input", params={"field": field})


def not_found(what: str, uid: str) -> ApiError:
    return ApiError(404, f"{what} {uid!r} not found", label="NOT_FOUND", scope="input")


def error_body(error: ApiError, ref: str) -> dict[str, Any]:
    return {
        "error_label": error.label,
        "error_scope": error.scope,
        "error_ref": ref,
        "message": error.message,
        "status_code": error.status,
        "params": error.params,
    }


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, headers=dict(headers or {}), media_type="application/json")


def parse_json_body(raw: bytes) -> Any:
    """The request body as JSON (None when empty); 400 naming the body when it is not JSON."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_input("body", f"the request body is not valid JSON ({exc})") from None


def json_object_body(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}`` unless ``required``."""
    data = parse_json_body(raw)
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise invalid_input("body", "the request body must be a JSON object")
    return data


def int_param(
    value: str | None, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """A whole-number query parameter within bounds; 400 naming it otherwise."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_input(name, f"query parameter '{name}' must be a whole number, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise invalid_input(name, f"query parameter '{name}' must be {bounds}, got {number}")
    return number
