"""Run statuses and the run snapshot every waiter reads: no pydantic here, so the operator
modules a DAG file imports stay cheap to parse."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    """What a waiter makes of a run status, for both API versions."""

    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # v4 PARTIAL_SUCCEEDED: finished with some errors
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by a user
    NEEDS_ATTENTION = "needs_attention"  # v3 paused: not final for the API, but nobody is working on it
    UNKNOWN = "unknown"  # a status we do not know: waiters fail closed

    @property
    def is_final(self) -> bool:
        return self not in (RunState.IN_PROGRESS, RunState.NEEDS_ATTENTION)

    @property
    def is_success(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.PARTIAL)


@dataclass(frozen=True)
class RunSnapshot:
    """A run as a waiter sees it, whatever the API version."""

    uid: str
    status: str
    state: RunState
    message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
