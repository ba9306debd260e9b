"""v3: workflows and their runs ("jobs"), under ``/v3``.

The seed set of workflows is fixed for a seed (same uids every time):

* "Extract LinkedIn People Profile": one step, input ``linkedin_profile_url``;
* "Extract LinkedIn Company": one step, input ``linkedin_company_url``;
* "Search LinkedIn People": one step, input ``linkedin_people_search_url``;
* "Search LinkedIn People and Extract Profiles": two steps (search, then extract).

A run is ``pending``, then ``running``, then ``finished`` (or its forced outcome) over the
configured times; its rows appear while it runs and are generated when a page is read.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_captaindata.emulator.errors import (
    ApiError,
    int_param,
    invalid_input,
    json_object_body,
    json_response,
    not_found,
)
from airflow_provider_captaindata.emulator.fakes import V3_COMPANY_FIELDS, V3_PEOPLE_FIELDS, v3_row
from airflow_provider_captaindata.emulator.records import V3Job, iso
from airflow_provider_captaindata.emulator.state import EmulatorState, stable_uid

log = logging.getLogger(__name__)

JOBS_PAGE_SIZE = 50
WEBHOOK_TICK_SECONDS = 0.05  # how soon after a run's end (or a stop) its webhook goes out
RESULTS_FIRST_PAGE = 0  # (uncertain) whether /results pages start at 0 or 1: clients follow `next`
REPEAT_TYPES = ("minute", "hour", "day", "week", "month")
RETRYABLE_STATUSES = ("warning", "shutdown", "stopped", "paused")


@dataclass(frozen=True)
class Step:
    uid: str
    step_uid: str
    name: str
    position: int
    input_field: str
    output_fields: dict[str, str]

    def details(self) -> dict[str, Any]:
        return {
            "step_uid": self.step_uid,
            "step_name": self.name,
            "position": self.position,
            "input_schema": {
                "type": "object",
                "properties": {self.input_field: {"type": "string", "format": "uri"}},
                "required": [self.input_field],
            },
            "output_schema": {
                "type": "object",
                "properties": {k: {"type": v.split(":")[0]} for k, v in self.output_fields.items()},
            },
            "parameters_schema": {"type": "object", "properties": {}},
            "integrations": ["linkedin"],
        }


@dataclass(frozen=True)
class Workflow:
    uid: str
    name: str
    template_uid: str
    steps: tuple[Step, ...]
    created_at: str

    def summary(self, project_uid: str) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "name": self.name,
            "created_at": self.created_at,
            "project_id": project_uid,
            "template_uid": self.template_uid,
            "steps": [{"uid": s.uid, "step_uid": s.step_uid, "name": s.name} for s in self.steps],
        }


SEED_WORKFLOWS: tuple[tuple[str, tuple[tuple[str, str, dict[str, str]], ...]], ...] = (
    (
        "Extract LinkedIn People Profile",
        (("Extract LinkedIn People Profile", "linkedin_profile_url", V3_PEOPLE_FIELDS),),
    ),
    ("Extract LinkedIn Company", (("Extract LinkedIn Company", "linkedin_company_url", V3_COMPANY_FIELDS),)),
    ("Search LinkedIn People", (("Search LinkedIn People", "linkedin_people_search_url", V3_PEOPLE_FIELDS),)),
    (
        "Search LinkedIn People and Extract Profiles",
        (
            ("Search LinkedIn People", "linkedin_people_search_url", V3_PEOPLE_FIELDS),
            ("Extract LinkedIn People Profile", "linkedin_profile_url", V3_PEOPLE_FIELDS),
        ),
    ),
)


def seed_workflows(seed: int) -> list[Workflow]:
    workflows = []
    for index, (name, steps) in enumerate(SEED_WORKFLOWS):
        workflows.append(
            Workflow(
                uid=stable_uid(seed, "workflow", index),
                name=name,
                template_uid=stable_uid(seed, "template", name),
                steps=tuple(
                    Step(
                        uid=stable_uid(seed, "workflow-step", index, position),
                        step_uid=stable_uid(seed, "step", index, position),
                        name=step_name,
                        position=position,
                        input_field=field,
                        output_fields=outputs,
                    )
                    for position, (step_name, field, outputs) in enumerate(steps)
                ),
                created_at="2025-01-15T09:30:00.000Z",
            )
        )
    return workflows


class V3Api:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.workflows = seed_workflows(state.seed)
        self.by_uid = {w.uid: w for w in self.workflows}

    def routes(self) -> list[Route]:
        return [
            Route("/v3/workspace", self.workspace, methods=["GET"]),
            Route("/v3/workflows", self.list_workflows, methods=["GET"]),
            Route("/v3/workflows/{uid}/details", self.workflow_details, methods=["GET"]),
            Route("/v3/workflows/{uid}/schedule", self.launch, methods=["POST"]),
            Route("/v3/workflows/{uid}/jobs", self.list_jobs, methods=["GET"]),
            Route("/v3/jobs/{uid}", self.get_job, methods=["GET"]),
            Route("/v3/jobs/{name}", self.delete_schedule, methods=["DELETE"]),
            Route("/v3/jobs/{uid}/results", self.results, methods=["GET"]),
            Route("/v3/jobs/{uid}/inputs", self.inputs, methods=["GET"]),
            Route("/v3/jobs/{uid}/retry", self.retry, methods=["POST"]),
            Route("/v3/jobs/{uid}/cancel", self.cancel, methods=["POST"]),
        ]

    def _workflow(self, uid: str) -> Workflow:
        workflow = self.by_uid.get(uid)
        if workflow is None:
            raise not_found("workflow", uid)
        return workflow

    def _job(self, uid: str) -> V3Job:
        job = self.state.v3_jobs.get(uid)
        if job is None:
            raise not_found("run", uid)
        return job

    async def workspace(self, request: Request) -> Response:
        settings_max = 50_000
        used = self.state.v3_tasks_used
        start = time.gmtime()
        return json_response(
            {
                "name": "Emulated Workspace",
                "email": "owner@emulated-workspace.test",
                "plan_name": "Growth",
                "current_month_start": f"{start.tm_year:04d}-{start.tm_mon:02d}-01T00:00:00.000Z",
                "current_month_end": None,
                "tasks_left": max(0, settings_max - used),
                "tasks_max": settings_max,
                "tasks_used": used,
            }
        )

    async def list_workflows(self, request: Request) -> Response:
        return json_response([w.summary(self.state.project_uid) for w in self.workflows])

    async def workflow_details(self, request: Request) -> Response:
        workflow = self._workflow(request.path_params["uid"])
        return json_response(
            {"uid": workflow.uid, "name": workflow.name, "steps": [s.details() for s in workflow.steps]}
        )

    async def launch(self, request: Request) -> Response:
        workflow = self._workflow(request.path_params["uid"])
        body = json_object_body(await request.body())
        job = self._create_job(workflow, body, parent=None)
        return json_response(
            {
                "workflow": workflow.summary(self.state.project_uid),
                "message": f"Workflow {workflow.name!r} scheduled",
                "job_uid": job.uid,
            }
        )

    def _create_job(self, workflow: Workflow, body: dict[str, Any], parent: V3Job | None) -> V3Job:
        inputs = _check_inputs(body.get("inputs", parent.inputs if parent else None))
        steps = body.get("steps", parent.steps if parent else None)
        steps = _check_steps(workflow, steps)
        job_name = body.get("job_name", parent.name if parent else None)
        if job_name is not None and not isinstance(job_name, str):
            raise invalid_input("job_name", "'job_name' must be a string")
        repeat = _check_repeat(body.get("repeat_option"))
        if "unstructure_meta" in body and not isinstance(body["unstructure_meta"], bool):
            raise invalid_input("unstructure_meta", "'unstructure_meta' must be true or false")
        settings = self.state.settings
        now = time.time()
        if settings.v3_max_parallel_inputs is not None:
            running = sum(len(j.inputs) for j in self.state.v3_jobs.values() if j.is_in_progress(now))
            if running + len(inputs) > settings.v3_max_parallel_inputs:
                raise ApiError(
                    429,
                    f"{running} inputs are running and this run adds {len(inputs)}: over the plan's "
                    f"limit of {settings.v3_max_parallel_inputs} parallel inputs",
                    headers={"Retry-After": "1"},
                )
        uid = self.state.ids.uid()
        total = settings.v3_total_rows
        job = V3Job(
            uid=uid,
            name=job_name or f"{workflow.name} #{len(self.state.v3_jobs) + 1}",
            workflow_uid=workflow.uid,
            workflow_name=workflow.name,
            step_uid=steps[0]["step_uid"],
            main_job_uid=(parent.main_job_uid or parent.uid) if parent else None,
            inputs=inputs,
            steps=steps,
            created=now,
            pending_seconds=settings.v3_pending_seconds,
            running_seconds=settings.v3_running_seconds,
            total_rows=total if total is not None else settings.v3_rows_per_input * len(inputs),
            outcome=self.state.take_outcome(workflow.uid),
            repeat_option=repeat,
            accounts=[a for s in steps for a in s.get("accounts", []) if isinstance(a, str)],
        )
        self.state.v3_jobs[uid] = job
        self.state.v3_tasks_used += len(inputs)
        urls = webhook_urls(self.state, job)
        if urls:
            self.state.spawn(send_webhooks(self.state, job, urls))
        return job

    async def list_jobs(self, request: Request) -> Response:
        workflow = self._workflow(request.path_params["uid"])
        page = int_param(request.query_params.get("page"), "page", 0)
        jobs = [j for j in self.state.v3_jobs.values() if j.workflow_uid == workflow.uid]
        jobs.reverse()  # newest first (insertion order is creation order)
        now = time.time()
        chunk = jobs[page * JOBS_PAGE_SIZE : (page + 1) * JOBS_PAGE_SIZE]
        listed = [j.to_dict(now) for j in chunk]
        undated = self.state.settings.v3_list_undated_names
        if undated:
            for job in listed:
                if fnmatch.fnmatchcase(job.get("name") or "", undated):
                    job["finish_time"] = None  # the run's own read (GET /jobs/{uid}) keeps it
        return json_response(listed)

    async def get_job(self, request: Request) -> Response:
        return json_response(self._job(request.path_params["uid"]).to_dict(time.time()))

    async def results(self, request: Request) -> Response:
        job = self._job(request.path_params["uid"])
        page = int_param(
            request.query_params.get("page"), "page", RESULTS_FIRST_PAGE, minimum=RESULTS_FIRST_PAGE
        )
        size = self.state.settings.v3_page_size
        available = job.rows_available(time.time())
        offset = (page - RESULTS_FIRST_PAGE) * size
        workflow = self.by_uid[job.workflow_uid]
        fields = workflow.steps[-1].output_fields
        rows = []
        for row_index in range(offset, min(offset + size, available)):
            input_index = job.input_index_of(row_index)
            key = (self.state.seed, job.uid)
            rows.append(v3_row(fields, key, job.inputs[input_index], input_index, row_index))
        has_next = offset + size < available
        return json_response(
            {
                "results": rows,
                "paging": {
                    "previous": (
                        str(request.url.include_query_params(page=page - 1))
                        if page > RESULTS_FIRST_PAGE
                        else None
                    ),
                    "next": str(request.url.include_query_params(page=page + 1)) if has_next else None,
                    "have_next_page": has_next,
                },
            }
        )

    async def inputs(self, request: Request) -> Response:
        # (uncertain) the shape is not documented: the inputs as they were launched.
        return json_response(list(self._job(request.path_params["uid"]).inputs))

    async def retry(self, request: Request) -> Response:
        parent = self._job(request.path_params["uid"])
        status = parent.status(time.time())
        if status not in RETRYABLE_STATUSES:
            raise invalid_input(
                "uid", f"run {parent.uid} is {status}: only a failed, stopped or paused run can be retried"
            )
        body = json_object_body(await request.body(), required=False)
        workflow = self.by_uid[parent.workflow_uid]
        job = self._create_job(workflow, body, parent=parent)
        return json_response(
            {
                "workflow": workflow.summary(self.state.project_uid),
                "message": f"Run {parent.uid} retried",
                "job_uid": job.uid,
            }
        )

    async def cancel(self, request: Request) -> Response:
        job = self._job(request.path_params["uid"])
        now = time.time()
        if job.is_in_progress(now):
            job.stopped_at = now
        return json_response(job.to_dict(now))

    async def delete_schedule(self, request: Request) -> Response:
        name = request.path_params["name"]
        repeating = [j for j in self.state.v3_jobs.values() if j.name == name and j.repeat_option]
        if not repeating:
            raise not_found("repeating run named", name)
        for job in repeating:
            job.repeat_option = None
        return json_response({"message": f"Schedule of {name!r} deleted", "deleted_at": iso(time.time())})


def webhook_urls(state: EmulatorState, job: V3Job) -> list[str]:
    """The workflow's own webhook and the workspace's, each once (both fire, as in the app)."""
    urls = (state.v3_webhooks.get(job.workflow_uid), state.settings.v3_webhook_url)
    return list(dict.fromkeys(url for url in urls if url))


async def send_webhooks(state: EmulatorState, job: V3Job, urls: list[str]) -> None:
    """ "Created" now, then "succeeded" or "failed" once the run is no longer pending or running."""
    await _post_webhooks(state, job, "created", urls)
    while job.is_in_progress(time.time()):
        await asyncio.sleep(WEBHOOK_TICK_SECONDS)
    status = job.status(time.time())
    await _post_webhooks(state, job, "succeeded" if status in ("finished", "completed") else "failed", urls)


async def _post_webhooks(state: EmulatorState, job: V3Job, kind: str, urls: list[str]) -> None:
    import httpx

    status = job.status(time.time())
    error = None
    if kind == "failed":
        error = (job.outcome.error_message if job.outcome else None) or f"The run ended {status}"
    body = {
        "uid": state.ids.uid(),
        "job_uid": job.uid,
        "message": f"Run {job.name!r} {kind}",
        "project_uid": state.project_uid,
        "error": error,
        "recipe_ref": None,
        "workflow_uid": job.workflow_uid,
        "workflow_name": job.workflow_name,
        "job_name": job.name,
    }
    for url in urls:
        try:
            answer = await state.callback_client().post(
                url, json=body, timeout=state.settings.callback_timeout_seconds
            )
            code = answer.status_code
        except (httpx.HTTPError, ValueError, OSError) as exc:
            log.debug("Webhook of run %s failed: %s", job.uid, type(exc).__name__)  # not the URL: a token
            code = 0
        state.v3_webhooks_sent.append({"job_uid": job.uid, "kind": kind, "status_code": code})


def _check_inputs(inputs: Any) -> list[dict[str, Any]]:
    if inputs is None:
        raise invalid_input("inputs", "'inputs' is required: a non-empty list of objects")
    if not isinstance(inputs, list) or not inputs:
        raise invalid_input("inputs", "'inputs' must be a non-empty list of objects")
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise invalid_input(f"inputs[{index}]", f"inputs[{index}] must be an object")
    return inputs


def _check_steps(workflow: Workflow, steps: Any) -> list[dict[str, Any]]:
    if steps is None:
        return [{"step_uid": s.step_uid} for s in workflow.steps]
    if not isinstance(steps, list) or not steps:
        raise invalid_input("steps", "'steps' must be a non-empty list of objects with a step_uid")
    known = {s.step_uid for s in workflow.steps}
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or "step_uid" not in step:
            raise invalid_input(f"steps[{index}]", f"steps[{index}] must be an object with a step_uid")
        if step["step_uid"] not in known:
            raise invalid_input(
                f"steps[{index}].step_uid",
                f"steps[{index}].step_uid {step['step_uid']!r} is not a step of workflow {workflow.uid}",
            )
        accounts = step.get("accounts", [])
        if not isinstance(accounts, list):
            raise invalid_input(f"steps[{index}].accounts", f"steps[{index}].accounts must be a list")
    return steps


def _check_repeat(repeat: Any) -> dict[str, Any] | None:
    if repeat is None:
        return None
    if not isinstance(repeat, dict):
        raise invalid_input("repeat_option", "'repeat_option' must be an object {type, value}")
    kind, value = repeat.get("type"), repeat.get("value")
    if kind not in REPEAT_TYPES:
        raise invalid_input(
            "repeat_option.type", f"repeat_option.type must be one of {', '.join(REPEAT_TYPES)}"
        )
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_input("repeat_option.value", "repeat_option.value must be a positive whole number")
    return {"type": kind, "value": value}
