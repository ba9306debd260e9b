"""The request handler of the tests' loopback HTTP servers (plain or TLS)."""

from __future__ import annotations

import http.server
from typing import Any


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """Answers with JSON bodies and logs nothing: a test's output stays its own."""

    def send_json(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass
