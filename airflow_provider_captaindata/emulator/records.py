"""What the emulator remembers: faults, forced outcomes, v3 runs, v4 runs, callbacks, schedules.

Plain dataclasses, all touched from the server's event loop only. v3 runs compute their
status and row count from the clock when asked, so nothing has to tick in the background.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

V3_FORCED_STATUSES = ("warning", "shutdown", "stopped", "paused", "finished")
V4_FORCED_STATUSES = ("FAILED", "PARTIAL_SUCCEEDED", "INVALID", "STOPPED", "BLOCKED", "SUCCEEDED")


# Seconds Captain Data's clock is ahead (negative: behind) of this machine's, applied to every
# date the API writes (setting ``clock_skew_seconds``). Process-wide: the dates are written
# by many records that know no settings, and one process serves one emulator.
CLOCK = {"skew_seconds": 0.0}


def iso(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the API writes dates (on its own clock)."""
    if timestamp is None:
        return None
    timestamp += CLOCK["skew_seconds"]
    moment = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


@dataclass
class Fault:
    """An answer forced on the next ``times`` requests matching method and path glob."""

    uid: str
    method: str
    path: str
    times: int | None = 1  # None: every matching request
    status: int | None = None
    retry_after: float | str | None = None
    delay: float | None = None
    drop: bool = False
    malformed: bool = False
    body: Any = None  # a JSON answer (200) served in place of the API's
    headers: dict[str, str] | None = None  # added to the ``body`` answer
    match_body: str | None = None  # a substring of the body (of the decoded query string for a GET)
    error_label: str | None = None
    message: str | None = None
    after: bool = False  # the API processes the request first; only its answer is the fault's
    hits: int = 0

    @property
    def answers(self) -> bool:
        """Whether the fault replaces the answer (a delay alone only holds it back)."""
        return self.drop or self.malformed or self.status is not None or self.body is not None

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method not in ("*", method.upper()):
            return False
        if not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.match_body is None or self.match_body.encode() in body

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["remaining"] = None if self.times is None else self.times - self.hits
        return data


@dataclass
class Outcome:
    """The status the next run of a workflow (v3) or an action (v4) ends in."""

    target: str
    status: str
    error_message: str | None = None
    times: int = 1


@dataclass
class V3Job:
    uid: str
    name: str
    workflow_uid: str
    workflow_name: str
    step_uid: str | None
    main_job_uid: str | None
    inputs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    created: float
    pending_seconds: float
    running_seconds: float
    total_rows: int
    outcome: Outcome | None = None
    stopped_at: float | None = None
    repeat_option: dict[str, Any] | None = None
    accounts: list[str] = field(default_factory=list)

    def _elapsed(self, now: float) -> float:
        return (min(now, self.stopped_at) if self.stopped_at is not None else now) - self.created

    def status(self, now: float) -> str:
        if self.stopped_at is not None:
            return "stopped"
        elapsed = self._elapsed(now)
        if elapsed < self.pending_seconds:
            return "pending"
        if elapsed < self.pending_seconds + self.running_seconds:
            return "running"
        return self.outcome.status if self.outcome else "finished"

    def rows_available(self, now: float) -> int:
        """Rows readable now: none while pending, a growing share while running."""
        elapsed = self._elapsed(now) - self.pending_seconds
        if elapsed <= 0:
            return 0
        if self.running_seconds <= 0 or elapsed >= self.running_seconds:
            return self.total_rows
        return math.floor(self.total_rows * elapsed / self.running_seconds)

    def input_index_of(self, row_index: int) -> int:
        """Rows are split in contiguous blocks, one per input."""
        return min(row_index * len(self.inputs) // max(self.total_rows, 1), len(self.inputs) - 1)

    def is_in_progress(self, now: float) -> bool:
        return self.status(now) in ("pending", "running")

    def to_dict(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        started = self.created + self.pending_seconds
        started_at = started if self._elapsed(now) >= self.pending_seconds else None
        finish = self.stopped_at if self.stopped_at is not None else started + self.running_seconds
        finished_at = finish if status not in ("pending", "running") else None
        rows = self.rows_available(now)
        return {
            "uid": self.uid,
            "name": self.name,
            "workflow_uid": self.workflow_uid,
            "workflow_name": self.workflow_name,
            "main_job_uid": self.main_job_uid,
            "step_uid": self.step_uid,
            "status": status,
            "error_message": self.outcome.error_message if self.outcome and finished_at else None,
            "accounts": list(self.accounts),
            "configuration": {"repeat_option": self.repeat_option} if self.repeat_option else {},
            "number_inputs": len(self.inputs),
            "row_count": rows,
            "total_row_count": rows,
            "start_time": iso(started_at),
            "finish_time": iso(finished_at),
            "scheduled_time": iso(self.created),
        }


@dataclass
class V4Run:
    id: int
    uid: str
    action_name: str
    action_id: int
    execution_mode: str  # LIVE or ASYNC
    status: str
    user_uid: str
    workspace_uid: str
    created: float
    inputs: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    identity_mode: str | None = None
    callback_url: str | None = None
    callback_headers: dict[str, str] = field(default_factory=dict)
    outcome: Outcome | None = None
    started: float | None = None
    finished: float | None = None
    updated: float | None = None
    last_error: dict[str, str] | None = None
    retry_count: int = 0
    pending_inputs: list[int] = field(default_factory=list)  # not delivered with results yet
    schedule_uid: str | None = None
    rows_per_input: int = 1  # taken from the settings at launch
    page_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uid": self.uid,
            "action_id": self.action_id,
            "action_name": self.action_name,
            "retry_count": self.retry_count,
            "user_uid": self.user_uid,
            "workspace_uid": self.workspace_uid,
            "execution_mode": self.execution_mode,
            "last_error": self.last_error,
            "callback": {"url": self.callback_url} if self.callback_url else None,
            "status": self.status,
            "postponed_until": None,
            "started_at": iso(self.started),
            "finished_at": iso(self.finished),
            "synced_at": iso(self.updated),
            "created_at": iso(self.created),
            "updated_at": iso(self.updated or self.created),
        }

    def launch_answer(self) -> dict[str, Any]:
        """The async launch answer (``ActionAsyncResponse`` in the document)."""
        return {
            "run_id": self.id,
            "run_uid": self.uid,
            "workspace_uid": self.workspace_uid,
            "user_uid": self.user_uid,
            "action_name": self.action_name,
            "status": self.status,
            "postponed_until": None,
            "created_at": iso(self.created),
            "synced_at": None,
            "updated_at": iso(self.created),
        }


@dataclass(slots=True)
class CallbackRecord:
    uid: str
    run_uid: str
    batch_uid: str
    workspace_uid: str
    callback_url: str
    created: float
    input_index: int
    page_index: int
    run_status: str  # the status the page carried
    page: Any  # what to send again on replay (emulator.v4_runs.Page)
    status: str = "PENDING"
    http_status: int = 0  # 0: no HTTP answer (connection refused, dropped, timed out)
    retry_count: int = 0
    parent_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "parent_uid": self.parent_uid,
            "retry_count": self.retry_count,
            "created_at": iso(self.created),
            "status": self.status,
            "callback_url": self.callback_url,
            "http_status": self.http_status,
            "batch_uid": self.batch_uid,
            "run_uid": self.run_uid,
            "workspace_uid": self.workspace_uid,
        }


@dataclass
class Schedule:
    uid: str
    action_name: str
    action_id: int
    user_uid: str
    workspace_uid: str
    body: dict[str, Any]
    created: float
    status: str = "ACTIVE"
    cron: str | None = None
    timezone: str | None = None
    next_execution: float | None = None
    last_executed: float | None = None
    updated: float | None = None
    run_uids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "action_id": self.action_id,
            "action_name": self.action_name,
            "user_uid": self.user_uid,
            "workspace_uid": self.workspace_uid,
            "status": self.status,
            "postponed_until": None,
            "cron": self.cron,
            "timezone": self.timezone,
            "next_execution_at": iso(self.next_execution) if self.status == "ACTIVE" else None,
            "last_executed_at": iso(self.last_executed),
            "created_at": iso(self.created),
            "updated_at": iso(self.updated or self.created),
        }


# Headers that carry credentials: kept in the request log only when they hold this emulator's
# own key (public through /_emulator/info); any other value (a real key pointed here by
# mistake, a refused one) is replaced, since every local process can read the log.
SECRET_HEADERS = ("x-api-key", "authorization", "proxy-authorization", "cookie")
REDACTED_VALUE = "***"


def redact_headers(headers: dict[str, str], own_key: str) -> dict[str, str]:
    """``headers`` (lowercase names) for the request log, credentials redacted."""
    shown = dict(headers)
    for name in SECRET_HEADERS:
        value = shown.get(name)
        if value is None:
            continue
        scheme, _, rest = value.partition(" ")
        if value == own_key or (rest and rest.strip() == own_key):
            continue
        shown[name] = f"{scheme} {REDACTED_VALUE}" if rest and name != "x-api-key" else REDACTED_VALUE
    return shown
