"""Tokens out of every access log: the request path is redacted before the receiver routes it.

Callback and webhook URLs carry their token as a path segment, and access logs (uvicorn's, the
Airflow API server's ``http.access``) print the request path from the ASGI scope once the
answer is sent. Redacting inside a route handler leaves out every answer the router gives
itself (405 for GET, HEAD, PUT, OPTIONS; 404), so :class:`RedactPaths` wraps the whole app:
it rewrites ``path`` and ``raw_path`` in the scope (shared with the outer middlewares and the
server) before anything else runs, and keeps the path as sent under :data:`ROUTE_PATH` for the
handlers, which alone read the token.

What survives is an allow-list, not a deny-list: ``/health``, ``/v1/{launch_key}`` (24 hex)
and ``/webhooks/v3/{name}``; whatever follows them, and any other path, becomes
``REDACTED``. The query string is dropped from the scope for the same reason.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

REDACTED = "REDACTED"
ROUTE_PATH = "captaindata.route_path"  # scope key: the path below the mount, as sent
_KEEP = (
    re.compile(r"(/health)/?"),
    re.compile(r"(/v1(?:/[0-9a-f]{24}(?=/|$))?)(?:/.*)?", re.DOTALL),
    re.compile(r"(/webhooks/v3(?:/[a-z0-9][a-z0-9_-]{0,63}(?=/|$))?)(?:/.*)?", re.DOTALL),
)


def redacted(route_path: str) -> str:
    """``route_path`` (the part below the mount) with everything that may be a token replaced."""
    for pattern in _KEEP:
        match = pattern.fullmatch(route_path)
        if match:
            kept = match.group(1)
            return route_path if kept in (route_path.rstrip("/"), "/health") else f"{kept}/{REDACTED}"
    return f"/{REDACTED}"


def redact_scope(scope: dict[str, Any]) -> None:
    """Rewrite the scope's path in place; the path as sent is kept under :data:`ROUTE_PATH`."""
    path = scope.get("path")
    if not isinstance(path, str) or ROUTE_PATH in scope:
        return
    root = scope.get("root_path") or ""
    # Starlette mounts keep the full path and the mount's prefix in root_path; older ones
    # strip the prefix from path. Either way only the part below the mount is ours.
    below = path[len(root) :] if root and path.startswith(root) else path
    prefix = path[: len(path) - len(below)]
    scope[ROUTE_PATH] = below
    scope["path"] = prefix + redacted(below)
    scope["raw_path"] = quote(scope["path"]).encode("ascii")
    scope["query_string"] = b""


class RedactPaths:
    """ASGI middleware: :func:`redact_scope` on every HTTP and WebSocket request, first."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes... of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            redact_scope(scope)
        await self.app(scope, receive, send)
