"""Wire models (pydantic, tolerant of extra fields) and run statuses.

The API adds fields over time: every model keeps unknown fields (``extra="allow"``) so a
newer answer never breaks a DAG, and ``model_dump()`` hands them on untouched.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

# Re-exported: the statuses live in a module that DAG files can import cheaply.
from airflow_provider_captaindata.client.statuses import RunSnapshot, RunState


class _WireModel(BaseModel):
    # defer_build: schemas are built on first use, not when a DAG file imports the provider.
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


# v3 ----------------------------------------------------------------------------------------


class V3Workflow(_WireModel):
    uid: str
    name: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)


class V3WorkflowStep(_WireModel):
    step_uid: str
    step_name: str | None = None
    position: int | None = None
    input_schema: Any = None


class V3WorkflowDetails(_WireModel):
    uid: str
    name: str | None = None
    steps: list[V3WorkflowStep] = Field(default_factory=list)


class V3LaunchAnswer(_WireModel):
    job_uid: str
    message: str | None = None


class V3Job(_WireModel):
    uid: str
    name: str | None = None
    workflow_uid: str | None = None
    workflow_name: str | None = None
    main_job_uid: str | None = None
    status: str
    error_message: str | None = None
    number_inputs: int | None = None
    row_count: int | None = None
    total_row_count: int | None = None
    start_time: str | None = None
    finish_time: str | None = None


class V3Paging(_WireModel):
    previous: str | None = None
    next: str | None = None
    have_next_page: bool | None = None


class V3ResultsPage(_WireModel):
    results: list[dict[str, Any]] = Field(default_factory=list)
    paging: V3Paging = Field(default_factory=V3Paging)

    @property
    def next_url(self) -> str | None:
        """Documented end: ``next`` null or ``have_next_page`` false; a missing flag does not
        end the paging (stopping there would drop every later page)."""
        return self.paging.next if self.paging.next and self.paging.have_next_page is not False else None


# v4 ----------------------------------------------------------------------------------------


class V4LastError(_WireModel):
    label: str | None = None
    message: str | None = None


class V4Run(_WireModel):
    # The async launch answers ``run_uid``; GET /runs/{uid} answers ``uid``.
    uid: str = Field(validation_alias=AliasChoices("uid", "run_uid"))
    action_name: str | None = None
    status: str
    execution_mode: str | None = None
    last_error: V4LastError | None = None
    callback: dict[str, Any] | None = None
    created_at: str | None = None
    finished_at: str | None = None


class V4CallbackRecord(_WireModel):
    uid: str
    run_uid: str | None = None
    batch_uid: str | None = None
    status: str | None = None
    http_status: int | None = None
    retry_count: int = 0


__all__ = [
    "RunSnapshot",
    "RunState",
    "V3Job",
    "V3LaunchAnswer",
    "V3Paging",
    "V3ResultsPage",
    "V3Workflow",
    "V3WorkflowDetails",
    "V3WorkflowStep",
    "V4CallbackRecord",
    "V4LastError",
    "V4Run",
]
