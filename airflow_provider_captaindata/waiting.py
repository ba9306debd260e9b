"""How a waiter decides, shared by the trigger (async) and the worker-side poll loop (sync).

A waiter reads a run's status every ``poll_interval`` seconds and ends with exactly one
event from a closed vocabulary. Keeping the decision here means the deferrable and the
blocking paths cannot drift apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from airflow_provider_captaindata.client.statuses import RunSnapshot, RunState
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataError,
)

EventStatus = Literal["success", "error", "cancelled", "timeout"]
EVENT_STATUSES: frozenset[str] = frozenset({"success", "error", "cancelled", "timeout"})
DEADLINE_WAIT = "timeout"  # the operator's ``timeout``: stop waiting, leave the run alone
DEADLINE_EXECUTION = "execution_timeout"  # the task's hard limit: stop the run too


def run_event(
    status: EventStatus,
    run_uid: str,
    *,
    api_version: str,
    run_status: str | None = None,
    message: str = "",
    deadline: str | None = None,
) -> dict[str, Any]:
    """The payload of every event a waiter emits (JSON primitives only)."""
    return {
        "status": status,
        "run_uid": run_uid,
        "api_version": api_version,
        "run_status": run_status,
        "message": message,
        "deadline": deadline,
    }


def checked_event(event: Any) -> dict[str, Any]:
    """The event, if it is one a waiter emits; anything else fails the task (fail closed)."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES or not event.get("run_uid"):
        from airflow_provider_captaindata.exceptions import CaptainDataError

        raise CaptainDataError(f"Unexpected trigger event {event!r}: failing closed")
    return event


def iso_time(epoch: float | None) -> str:
    """An epoch time for a log line ("none" when unset)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else "none"


def execution_deadline(start_date: Any, execution_timeout: Any) -> float | None:
    """Wall-clock time (epoch seconds) by which the trigger must hand back to the worker.

    Airflow may fail a deferred task at ``start + execution_timeout`` without calling the
    operator again, which would leave the remote run spending credits. The waiter fires
    a little earlier, so the operator stops the run itself. Without a start date (e.g.
    ``dag.test()`` on Airflow 2), the clock starts now.
    """
    if execution_timeout is None:
        return None
    start = start_date.timestamp() if start_date is not None else time.time()
    seconds = execution_timeout.total_seconds()
    margin = min(60.0, max(seconds * 0.1, 1.0))
    return start + seconds - margin


@dataclass
class RunWaiter:
    """Turns successive run snapshots into at most one event.

    :param run_uid: the run waited on.
    :param api_version: ``v3`` or ``v4``.
    :param timeout_at: epoch seconds after which waiting stops (the run is left alone).
    :param execution_deadline_at: epoch seconds after which the task's hard limit is near
        (the operator then stops the run).
    :param paused_grace_period: seconds a v3 run may stay ``paused`` before the wait fails.
    """

    run_uid: str
    api_version: str
    timeout_at: float | None = None
    execution_deadline_at: float | None = None
    paused_grace_period: float = 600.0
    paused_since: float | None = None
    last_status: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout_at", "execution_deadline_at", "paused_grace_period", "paused_since"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, int | float):
                raise CaptainDataConfigError(f"{name} must be a number of seconds, got {value!r}")

    def _event(self, status: EventStatus, **kwargs: Any) -> dict[str, Any]:
        return run_event(status, self.run_uid, api_version=self.api_version, **kwargs)

    def status_changed(self, snapshot: RunSnapshot) -> bool:
        changed = snapshot.status != self.last_status
        self.last_status = snapshot.status
        return changed

    def on_snapshot(self, snapshot: RunSnapshot, now: float | None = None) -> dict[str, Any] | None:
        """The event this status ends the wait with, or None to keep waiting."""
        now = time.time() if now is None else now
        state, status = snapshot.state, snapshot.status
        if state is RunState.NEEDS_ATTENTION:
            self.paused_since = self.paused_since or now
            if now - self.paused_since >= self.paused_grace_period:
                return self._event(
                    "error",
                    run_status=status,
                    message=(
                        f"run {self.run_uid} has been {status} for {now - self.paused_since:.0f} s: an "
                        "integration needs attention (cookies, credits or keys). Fix it in Captain Data, "
                        "then clear this task, or set retry_on_failure to retry the run."
                        + (f" Captain Data says: {snapshot.message}" if snapshot.message else "")
                    ),
                )
            return self.on_clock(now)
        self.paused_since = None
        if state is RunState.IN_PROGRESS:
            return self.on_clock(now)
        if state.is_success:
            return self._event("success", run_status=status, message=snapshot.message or "")
        if state is RunState.CANCELLED:
            return self._event(
                "cancelled", run_status=status, message=snapshot.message or f"run {self.run_uid} was {status}"
            )
        if state is RunState.UNKNOWN:
            return self._event(
                "error", run_status=status, message=f"unknown run status {status!r}: failing closed"
            )
        return self._event("error", run_status=status, message=snapshot.message or f"run ended {status}")

    def on_clock(self, now: float | None = None) -> dict[str, Any] | None:
        """A timeout event when a deadline has passed (checked even when polls fail)."""
        now = time.time() if now is None else now
        if self.execution_deadline_at is not None and now >= self.execution_deadline_at:
            return self._event(
                "timeout",
                run_status=self.last_status,
                deadline=DEADLINE_EXECUTION,
                message="the task's execution_timeout is reached",
            )
        if self.timeout_at is not None and now >= self.timeout_at:
            return self._event(
                "timeout",
                run_status=self.last_status,
                deadline=DEADLINE_WAIT,
                message="the operator's timeout is reached",
            )
        return None

    def sleep_for(self, poll_interval: float, now: float | None = None) -> float:
        """Seconds until the next poll, never sleeping past a deadline."""
        left = self.time_left(now)
        return max(0.0, poll_interval if left is None else min(poll_interval, left))

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds until the nearest deadline (0 once passed), None without one."""
        now = time.time() if now is None else now
        deadlines = [d for d in (self.timeout_at, self.execution_deadline_at) if d is not None]
        return max(0.0, min(deadlines) - now) if deadlines else None


def keeps_waiting(exc: CaptainDataError, run_uid: str, log: Any, then: str = "still waiting") -> bool:
    """After a status read failed: True (and a warning) when the wait goes on, since the retry
    policy gave up on this one read but the run may be healthy (a 5xx, a timeout, a dropped
    connection); False when no later read can succeed (401, 403, 404, a bad connection).
    The one decision of the operator, the sensor and the trigger."""
    if isinstance(exc, CaptainDataConfigError) or (
        isinstance(exc, CaptainDataAPIError) and not exc.is_retryable
    ):
        return False
    log.warning("Run %s: status unavailable (%s); %s", run_uid, exc, then)
    return True
