"""What differs between the v3 (workflows) and v4 (actions) APIs, as data.

Everything else (waiting, retries, result sinks) is shared. Choices the API reference marks
as uncertain live here, one line each, so they can be changed in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from airflow_provider_captaindata.client.scrub import scrub_url_tokens
from airflow_provider_captaindata.client.statuses import RunSnapshot, RunState

ApiVersionName = Literal["v3", "v4"]


@dataclass(frozen=True)
class ApiVersion:
    """The version-specific pieces: base URL, auth headers, run paths, status table."""

    name: ApiVersionName
    default_base_url: str
    run_path: str  # formatted with run_uid
    stop_path: str | None  # None: the API has no way to stop a run
    app_run_url: str  # link to the run in the Captain Data app, formatted with run_uid
    status_states: Mapping[str, RunState]
    case_sensitive: bool
    # Fields of a listed run that are never earlier than its creation: a lookup stops paging
    # at runs created before the first try (the earliest of them is used).
    created_fields: tuple[str, ...] = ()
    # Final for a waiter, yet Captain Data can resume the run: a retry never launches beside it.
    on_hold_statuses: frozenset[str] = frozenset()

    def auth_headers(self, api_key: str, project_uid: str | None) -> dict[str, str]:
        if self.name == "v3":
            assert project_uid is not None  # checked by ConnectionSettings.auth_headers
            return {"Authorization": f"x-api-key {api_key}", "x-project-id": project_uid}
        return {"X-API-Key": api_key}

    def status_key(self, status: str | None) -> str:
        """A raw status as this version's tables spell it (v4 compares case-insensitively)."""
        return (status or "") if self.case_sensitive else (status or "").upper()

    def state_of(self, status: str | None) -> RunState:
        """Map a raw status to a RunState; unknown statuses are UNKNOWN (waiters fail closed)."""
        return self.status_states.get(self.status_key(status), RunState.UNKNOWN)

    def on_hold(self, status: str | None) -> bool:
        """Whether a run in ``status`` may still be resumed in Captain Data (see ``on_hold_statuses``)."""
        return self.status_key(status) in self.on_hold_statuses

    def created_at(self, run: Mapping[str, Any]) -> float | None:
        """Epoch seconds no earlier than the run's creation, None when its fields say nothing."""
        times = [epoch_seconds(run.get(name)) for name in self.created_fields]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def snapshot(self, run: Mapping[str, Any]) -> RunSnapshot:
        """Read uid, status and the error message from a run object of this version."""
        status = str(run.get("status") or "")
        if self.name == "v3":
            message = run.get("error_message")
        else:
            last_error = run.get("last_error") or {}
            message = " ".join(str(p) for p in (last_error.get("label"), last_error.get("message")) if p)
        if isinstance(message, str):
            message = scrub_url_tokens(message)
        uid = str(run.get("uid") or run.get("run_uid") or "")
        return RunSnapshot(
            uid=uid, status=status, state=self.state_of(status), message=message or None, raw=dict(run)
        )


V3 = ApiVersion(
    name="v3",
    default_base_url="https://api.captaindata.co/v3",
    run_path="/jobs/{run_uid}",
    stop_path="/jobs/{run_uid}/cancel",  # (uncertain) "Cancel a Run" has no published path
    app_run_url="https://app.captaindata.co/jobs/{run_uid}",  # (uncertain)
    status_states={
        "pending": RunState.IN_PROGRESS,
        "running": RunState.IN_PROGRESS,
        "finished": RunState.SUCCEEDED,
        "completed": RunState.SUCCEEDED,
        "warning": RunState.FAILED,
        "shutdown": RunState.FAILED,
        "stopped": RunState.CANCELLED,
        "paused": RunState.NEEDS_ATTENTION,
    },
    case_sensitive=True,
    # (uncertain) the job object has no created_at: scheduled_time is the launch time (or a
    # later repeat), start_time is later still.
    created_fields=("scheduled_time", "start_time"),
)

V4 = ApiVersion(
    name="v4",
    default_base_url="https://api.captaindata.com/v4",
    run_path="/runs/{run_uid}",
    stop_path=None,  # v4 has no endpoint that stops a run
    app_run_url="https://app.captaindata.com/runs/{run_uid}",  # (uncertain)
    status_states={
        "CREATED": RunState.IN_PROGRESS,
        "QUEUED": RunState.IN_PROGRESS,
        "SCHEDULED": RunState.IN_PROGRESS,
        "RUNNING": RunState.IN_PROGRESS,
        "SUCCEEDED": RunState.SUCCEEDED,
        "PARTIAL_SUCCEEDED": RunState.PARTIAL,
        "FAILED": RunState.FAILED,
        "INVALID": RunState.FAILED,
        "BLOCKED": RunState.FAILED,
        "STOPPED": RunState.CANCELLED,
    },
    case_sensitive=False,
    created_fields=("created_at",),
    # BLOCKED: an integration needs attention (like v3's paused, which is never final); once
    # fixed, the run can be resumed (POST /runs/{uid}/resume). STOPPED: v4 cannot stop runs, so
    # someone stopped it in Captain Data, part-way through its inputs, and can resume it too.
    on_hold_statuses=frozenset({"BLOCKED", "STOPPED"}),
)

VERSIONS: dict[str, ApiVersion] = {"v3": V3, "v4": V4}


def epoch_seconds(value: Any) -> float | None:
    """An API date (ISO 8601, ``Z`` or an offset; naive is UTC) as epoch seconds; None when
    absent or not a date."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def get_version(name: str) -> ApiVersion:
    """Return the ApiVersion named ``v3`` or ``v4``; anything else is a config error."""
    try:
        return VERSIONS[name]
    except KeyError:
        from airflow_provider_captaindata.exceptions import CaptainDataConfigError

        raise CaptainDataConfigError(f"api_version must be 'v3' or 'v4', not {name!r}") from None
