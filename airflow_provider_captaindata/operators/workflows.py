"""``CaptainDataLaunchWorkflowOperator``: launch a v3 workflow on a batch of inputs, wait, collect."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_captaindata.client.statuses import RunSnapshot
from airflow_provider_captaindata.client.versions import V3
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.launch_identity import lookup_since
from airflow_provider_captaindata.operators.base import CaptainDataRunOperatorBase
from airflow_provider_captaindata.params import (
    as_json_value,
    check_conn_id,
    check_inputs,
    is_templated,
    whole_number,
)
from airflow_provider_captaindata.preflight import check_inputs_against_schema

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.models import V3WorkflowDetails

UID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REPEAT_TYPES = ("minute", "hour", "day", "week", "month")
RETRYABLE_RUN_STATUSES = ("warning", "paused")


class CaptainDataLaunchWorkflowOperator(CaptainDataRunOperatorBase):
    """Launch a Captain Data v3 workflow, wait for its run, and hand on every result row.

    A retried task never launches twice: the run uid is kept in ``task_state_store``
    (Airflow 3.3+) and the run is also found by its ``job_name``, which carries the launch
    identity (task instance, deployment, and a fingerprint of the workflow, inputs, steps and
    options). A run of this same launch still going is waited on again, a finished one has
    its results collected, a failed or missing one is launched anew; a run launched with
    other inputs (a clear after they changed) or by another deployment is never resumed.

    :param workflow_uid: uid of the workflow (templated).
    :param inputs: list of input dicts, e.g. ``[{"linkedin_profile_url": "..."}]`` (templated;
        a template or XComArg that renders to a JSON string of that list is accepted).
    :param steps: launch steps ``[{"step_uid": ..., "accounts": [...], "parameters": {...}}]``;
        default: the workflow's only step, read from its details.
    :param job_name: the start of the run's name (templated); the launch's tag `` #<16 hex>``
        is appended. Default ``airflow|{dag_id}|{task_id}|{run_id}|{map_index}|{deployment}``
        (``|`` and ``%`` in a part are %-escaped), then ``|#<tag>``: readable in the Captain
        Data app, at most 255 characters, and how an earlier try's run is found.
    :param repeat_option: ``{"type": "minute|hour|day|week|month", "value": n}`` to repeat.
    :param unstructure_meta: sent as is when set.
    :param retry_on_failure: times to call the API's retry on a run that ends ``warning`` or
        stays ``paused`` (default 0: fail). A paused run is stopped first (it would resume
        beside its retry); when it cannot be stopped, it is not retried and the task fails.

    Other parameters (waiting, timeouts, results) are those of
    :class:`~airflow_provider_captaindata.operators.base.CaptainDataRunOperatorBase`.
    Returns the rows (XCom), or ``{path, rows, run_uid}`` with ``output_path``.
    """

    api_version: ClassVar[str] = "v3"
    template_fields = (
        "workflow_uid",
        "inputs",
        "steps",
        "job_name",
        "repeat_option",
        "output_path",
        "captaindata_conn_id",
    )
    template_fields_renderers = {"inputs": "json", "steps": "json", "repeat_option": "json"}

    def __init__(
        self,
        *,
        workflow_uid: str,
        inputs: Sequence[Mapping[str, Any]] | str,
        steps: Sequence[Mapping[str, Any]] | None = None,
        job_name: str | None = None,
        repeat_option: Mapping[str, Any] | None = None,
        unstructure_meta: bool | None = None,
        retry_on_failure: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_uid = workflow_uid
        self.inputs = inputs
        self.steps = steps
        self.job_name = job_name
        self.repeat_option = repeat_option
        if unstructure_meta is not None and not isinstance(unstructure_meta, bool):
            raise CaptainDataConfigError(
                f"unstructure_meta must be None, True or False, got {unstructure_meta!r}"
            )
        self.unstructure_meta = unstructure_meta
        self.retry_on_failure = whole_number("retry_on_failure", retry_on_failure, minimum=0)
        self._workflow_details: V3WorkflowDetails | None = None
        self._validate(rendered=False)

    def _validate(self, *, rendered: bool) -> None:
        def ready(value: Any) -> bool:
            return rendered or not is_templated(value)

        check_conn_id(self.captaindata_conn_id)
        if ready(self.workflow_uid) and not (
            isinstance(self.workflow_uid, str) and UID_PATTERN.match(self.workflow_uid)
        ):
            raise CaptainDataConfigError(
                f"workflow_uid must be a Captain Data uid such as 7f3c2a10-0d5e-4c1b-9a57-2f1e0b6c9d44, "
                f"got {self.workflow_uid!r}"
            )
        if ready(self.inputs):
            self.inputs = check_inputs(
                "inputs", as_json_value("inputs", self.inputs) if rendered else self.inputs
            )
        if self.job_name is not None and ready(self.job_name) and not isinstance(self.job_name, str):
            raise CaptainDataConfigError(f"job_name must be a string, got {self.job_name!r:.80}")
        if self.steps is not None and ready(self.steps):
            steps = as_json_value("steps", self.steps) if rendered else self.steps
            if (
                not isinstance(steps, Sequence)
                or isinstance(steps, str | bytes)
                or not all(
                    isinstance(s, Mapping) and isinstance(s.get("step_uid"), str) and s["step_uid"]
                    for s in steps
                )
            ):
                raise CaptainDataConfigError(
                    f"steps must be a list of dicts, each with a step_uid, got {steps!r:.80}"
                )
            for index, step in enumerate(steps):
                accounts, parameters = step.get("accounts"), step.get("parameters")
                if accounts is not None and (
                    not isinstance(accounts, Sequence) or isinstance(accounts, str | bytes)
                ):
                    raise CaptainDataConfigError(
                        f"steps[{index}].accounts must be a list, got {type(accounts).__name__}"
                    )
                if parameters is not None and not isinstance(parameters, Mapping):
                    raise CaptainDataConfigError(
                        f"steps[{index}].parameters must be a dict, got {type(parameters).__name__}"
                    )
            self.steps = steps
        if self.repeat_option is not None and ready(self.repeat_option):
            option = as_json_value("repeat_option", self.repeat_option) if rendered else self.repeat_option
            if not (
                isinstance(option, Mapping)
                and option.get("type") in REPEAT_TYPES
                and isinstance(option.get("value"), int)
                and not isinstance(option["value"], bool)
                and option["value"] > 0
            ):
                raise CaptainDataConfigError(
                    f"repeat_option must be {{'type': one of {REPEAT_TYPES}, 'value': int > 0}}, "
                    f"got {option!r}"
                )
            self.repeat_option = option

    def validate_rendered(self) -> None:
        self._validate(rendered=True)

    def launch_fingerprint(self) -> dict[str, Any]:
        return {
            "api": "v3",
            "workflow_uid": self.workflow_uid,
            "inputs": self.inputs,
            "steps": self.steps,  # None: the workflow's only step
            "repeat_option": self.repeat_option,
            "unstructure_meta": self.unstructure_meta,
        }

    def run_name(self, context: Any) -> str:
        """The ``job_name`` sent: it carries the launch identity, which is how a retry finds
        this launch's run (and only it)."""
        return self.launch_identity(context).job_name(self.job_name)

    def launch(self, context: Any, stale_run_uids: list[str]) -> str:
        job_name = self.run_name(context)
        steps = list(self.steps) if self.steps else self._default_steps()
        self._check_inputs_schema(steps[0]["step_uid"])
        run_uid = self.hook.launch_workflow_once(
            self.workflow_uid,
            job_name=job_name,
            stale_run_uids=stale_run_uids,
            inputs=self.inputs,
            steps=steps,
            repeat_option=self.repeat_option,
            unstructure_meta=self.unstructure_meta,
        )
        self.log.info(
            "Launched workflow %s: run %s (%r, %s inputs)",
            self.workflow_uid,
            run_uid,
            job_name,
            len(self.inputs),
        )
        return run_uid

    def find_earlier_run(self, context: Any, exclude: Sequence[str]) -> tuple[RunSnapshot | None, str]:
        job_name = self.run_name(context)
        job = self.hook.find_workflow_run(
            self.workflow_uid, job_name, since=lookup_since(context), exclude=exclude
        )
        return (V3.snapshot(job.model_dump()) if job else None), f"found by job name {job_name!r}"

    def _details(self) -> V3WorkflowDetails:
        """The workflow's details (steps, input schema): one call per task."""
        if self._workflow_details is None:
            self._workflow_details = self.hook.get_workflow_details(self.workflow_uid)
        return self._workflow_details

    def _check_inputs_schema(self, first_step_uid: str) -> None:
        """The inputs go to the launch's first step: checked against its input_schema."""
        step = next((s for s in self._details().steps if s.step_uid == first_step_uid), None)
        if step is not None:
            check_inputs_against_schema("inputs", self.inputs, step.input_schema, self.workflow_uid)

    def _default_steps(self) -> list[dict[str, Any]]:
        details = self._details()
        if len(details.steps) != 1:
            listed = ", ".join(f"{s.step_uid} ({s.step_name})" for s in details.steps) or "none"
            raise CaptainDataConfigError(
                f"steps: workflow {self.workflow_uid} has {len(details.steps)} steps ({listed}); "
                "pass steps=[{'step_uid': ..., 'accounts': [...], 'parameters': {...}}, ...]"
            )
        return [{"step_uid": details.steps[0].step_uid, "accounts": [], "parameters": {}}]

    def result_pages(self, run_uid: str) -> Iterable[list[dict[str, Any]]]:
        return self.hook.iter_workflow_results(run_uid)

    def on_run_failed(self, context: Any, event: dict[str, Any], retries_done: int) -> str | None:
        if retries_done >= self.retry_on_failure or event.get("run_status") not in RETRYABLE_RUN_STATUSES:
            return None
        if event.get("run_status") == "paused" and not self._stop(
            event["run_uid"], "retry_on_failure runs a retry in its place"
        ):
            # A paused run resumes once its integration is fixed: beside a retry, the inputs
            # would run (and cost credits) twice. Not stopped: no retry, the task fails.
            return None
        answer = self.hook.retry_workflow_run(event["run_uid"])
        new_uid = answer.get("job_uid") or answer.get("uid")
        if not new_uid:
            return None
        self.log.warning(
            "Run %s ended %s (%s): retry %s of %s is run %s",
            event["run_uid"],
            event.get("run_status"),
            event.get("message"),
            retries_done + 1,
            self.retry_on_failure,
            new_uid,
        )
        self.remember_run(context, new_uid)
        return str(new_uid)
