"""``EmulatorClient``: drive any running emulator (in-process or started by the CLI) over HTTP.

Control helpers (reset, faults, forced outcomes, settings, request log) and the Airflow
connection that points at the emulator. Only httpx is needed: no server libraries.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import quote

from airflow_provider_captaindata.emulator.settings import DEFAULT_API_KEY, DEFAULT_PROJECT_UID

DEFAULT_CONN_ID = "captaindata_default"


class EmulatorControlError(RuntimeError):
    """The control API refused a call (400 with the reason) or could not be reached."""


class EmulatorClient:
    """Talks to the emulator at ``base_url`` (``http://127.0.0.1:PORT``, no ``/v3`` or ``/v4``).

    ``api_key`` and ``project_uid`` are read from the emulator when not given."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        project_uid: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._base_url: str | None = base_url.rstrip("/")
        self._api_key = api_key
        self._project_uid = project_uid
        self._timeout = timeout
        self._http: Any = None
        self._http_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._base_url!r})"

    # -- where it is ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise EmulatorControlError("the emulator is not started: call start() first")
        return self._base_url

    @property
    def v3_url(self) -> str:
        return f"{self.base_url}/v3"

    @property
    def v4_url(self) -> str:
        return f"{self.base_url}/v4"

    @property
    def v1_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def api_key(self) -> str:
        if self._api_key is None:
            self._api_key = str(self.info()["api_key"])
        return self._api_key

    @property
    def project_uid(self) -> str:
        if self._project_uid is None:
            self._project_uid = str(self.info()["project_uid"])
        return self._project_uid

    # -- control API ------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._http_lock:
            if self._http is None:
                import httpx

                self._http = httpx.Client(timeout=self._timeout)
            return self._http

    def close(self) -> None:
        with self._http_lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def _control(self, method: str, path: str, *, body: Any = None, params: Any = None) -> Any:
        import httpx

        url = f"{self.base_url}/_emulator/{path}"
        try:
            # The control API takes JSON POSTs only (a browser page cannot send them cross-origin).
            if body is None and method == "POST":
                body = {}
            answer = self._client().request(method, url, json=body, params=params)
        except httpx.HTTPError as exc:
            raise EmulatorControlError(f"cannot reach the emulator at {self.base_url}: {exc}") from exc
        if answer.status_code >= 400:
            try:
                message = answer.json().get("message") or answer.text
            except ValueError:
                message = answer.text
            raise EmulatorControlError(f"{method} /_emulator/{path}: {answer.status_code} {message}")
        return answer.json()

    def info(self) -> dict[str, Any]:
        """Base URLs, API key, project uid, seed and the setting names."""
        data: dict[str, Any] = self._control("GET", "info")
        return data

    def reset(self) -> None:
        """Back to the seeded initial state: runs, faults, outcomes, settings and log cleared."""
        self._control("POST", "reset")

    def add_fault(
        self,
        method: str,
        path: str,
        *,
        times: int | None = 1,
        status: int | None = None,
        retry_after: float | str | None = None,
        delay: float | None = None,
        drop: bool = False,
        malformed: bool = False,
        body: Any = None,
        headers: dict[str, str] | None = None,
        match_body: str | None = None,
        error_label: str | None = None,
        message: str | None = None,
        after: bool = False,
    ) -> str:
        """Force the answer of the next ``times`` requests (None: all) matching ``method`` and
        the fnmatch glob ``path`` (e.g. ``/v3/jobs/*/results``); returns the fault's uid.

        ``status``: that code with the v4 error body (``error_label``/``message``), plus
        ``Retry-After`` when ``retry_after`` is set; ``delay``: seconds to wait first (alone:
        then answer normally); ``drop``: close the connection with no answer; ``malformed``:
        200 with truncated JSON; ``body``: 200 with this JSON instead of the API's answer (plus
        ``headers``), e.g. a results page with a broken ``paging``; ``match_body``: only
        requests whose body contains it; ``after``: the API serves the request first (a run
        is created, a message sent) and only then is its answer replaced by the status, drop,
        truncated JSON or body."""
        fields = {
            "method": method,
            "path": path,
            "times": times,
            "status": status,
            "retry_after": retry_after,
            "delay": delay,
            "drop": drop,
            "malformed": malformed,
            "body": body,
            "headers": headers,
            "match_body": match_body,
            "error_label": error_label,
            "message": message,
            "after": after or None,
        }
        # times=None is meaningful (every request): it is always sent.
        sent = {k: v for k, v in fields.items() if v is not None or k == "times"}
        fault = self._control("POST", "faults", body=sent)
        return str(fault["uid"])

    def faults(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._control("GET", "faults")
        return data

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def force_outcome(
        self, target: str, status: str, *, error_message: str | None = None, times: int = 1
    ) -> None:
        """The next ``times`` runs of ``target`` (a v3 workflow uid or a v4 action name) end in
        ``status`` (v3: warning, shutdown, stopped, paused; v4: FAILED, PARTIAL_SUCCEEDED,
        INVALID, STOPPED, BLOCKED) with ``error_message``."""
        body = {"target": target, "status": status, "error_message": error_message, "times": times}
        self._control("POST", "outcomes", body={k: v for k, v in body.items() if v is not None})

    def set_webhook(self, url: str | None, workflow_uid: str | None = None) -> None:
        """Where v3 webhooks go: the workspace-wide URL, or ``workflow_uid``'s own (None removes)."""
        if workflow_uid is None:
            self.configure(v3_webhook_url=url)
        else:
            self._control("POST", "webhooks", body={"workflow_uid": workflow_uid, "url": url})

    def webhooks_sent(self) -> list[dict[str, Any]]:
        """The v3 webhook deliveries made: ``{job_uid, kind, status_code}``, oldest first."""
        data: list[dict[str, Any]] = self._control("GET", "webhooks")["sent"]
        return data

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings (see docs/emulator.md); returns them all. Unknown names are refused."""
        data: dict[str, Any] = self._control("POST", "config", body=settings)
        return data

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = self._control("GET", "config")
        return data

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first: ``{method, path, query, headers, body, status, time,
        fault}``; ``path`` is an fnmatch glob."""
        params = {k: v for k, v in {"method": method, "path": path}.items() if v}
        data: list[dict[str, Any]] = self._control("GET", "requests", params=params)
        return data

    def clear_requests(self) -> None:
        self._control("DELETE", "requests")

    # -- pointing Airflow at it -------------------------------------------------------------------

    def connection_json(self) -> dict[str, Any]:
        """The Airflow connection (JSON form) that points the provider at this emulator."""
        return {
            "conn_type": "captaindata",
            "host": self.base_url,
            "password": self.api_key,
            "extra": {"project_uid": self.project_uid},
        }

    def connection_uri(self, conn_id: str = DEFAULT_CONN_ID) -> str:
        """The same connection as an Airflow URI (the host is URL-encoded, scheme included)."""
        del conn_id  # the URI form does not carry the id; kept for a uniform signature
        host = quote(self.base_url, safe="")
        return f"captaindata://:{quote(self.api_key, safe='')}@{host}/?project_uid={quote(self.project_uid)}"

    def airflow_env(self, conn_id: str = DEFAULT_CONN_ID) -> dict[str, str]:
        """``{"AIRFLOW_CONN_<ID>": <connection JSON>}``, to put in a test's or a process's env."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(self.connection_json())}


__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_CONN_ID",
    "DEFAULT_PROJECT_UID",
    "EmulatorClient",
    "EmulatorControlError",
]
