"""``CaptainDataClient``: the Captain Data API (v3 workflows, v4 actions) for blocking code.

Usable from a plain script, without Airflow::

    from airflow_provider_captaindata.client import CaptainDataClient

    client = CaptainDataClient(api_key="...", project_uid="...")
    client.get_workspaces()

Each public method is one API endpoint (or a safe composition of endpoints, such as
:meth:`~CaptainDataClient.launch_workflow_once`); every call goes through the one
retry/timeout/error policy of :mod:`airflow_provider_captaindata.client.transport`, and what
differs between API generations is data in :mod:`airflow_provider_captaindata.client.versions`.
The Airflow hook :class:`~airflow_provider_captaindata.hooks.captaindata.CaptainDataHook`
builds this client from a connection and delegates every endpoint method to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_captaindata.client.action_inputs import (
    MAX_ASYNC_INPUTS,
    action_body,
    validate_action_input,
)
from airflow_provider_captaindata.client.calls import build_request, live_call, v4_runs_params
from airflow_provider_captaindata.client.lookups import launch_once, runs_since
from airflow_provider_captaindata.client.paging import PageTrail, next_page_url, resolve_next
from airflow_provider_captaindata.client.policy import DEFAULT_POLICY, ApiResponse, RetryPolicy
from airflow_provider_captaindata.client.settings import ConnectionSettings
from airflow_provider_captaindata.client.statuses import RunSnapshot
from airflow_provider_captaindata.client.transport import SyncRateGate, SyncTransport
from airflow_provider_captaindata.client.versions import V3, V4, ApiVersion, get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataConfigError,
    CaptainDataPagingError,
)

if TYPE_CHECKING:
    # The wire models are pydantic classes (~10 ms to define): DAG files import the hook,
    # so each method imports the ones it parses with on first call.
    from airflow_provider_captaindata.client.models import (
        V3Job,
        V3LaunchAnswer,
        V3Workflow,
        V3WorkflowDetails,
        V4CallbackRecord,
        V4Run,
    )
    from airflow_provider_captaindata.client.v1 import V1Client


class CaptainDataClient:
    """Blocking client of both Captain Data APIs.

    :param api_key: the workspace's API key.
    :param project_uid: the v3 project (workspace) uid, which every v3 call needs.
    :param base_url: the API's origin (default ``https://api.captaindata.com``); ``/v3`` and
        ``/v4`` are appended unless ``v3_base_url``/``v4_base_url`` say otherwise.
    :param v3_base_url: base URL of the v3 API.
    :param v4_base_url: base URL of the v4 API.
    :param rate_limit_per_second: your plan's live requests per second (default 1).
    :param retry_policy: timeouts and retries; the default suits the real API.
    :param settings: already validated settings (what the Airflow hook passes), instead of the
        fields above.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        project_uid: str | None = None,
        base_url: str | None = None,
        v3_base_url: str | None = None,
        v4_base_url: str | None = None,
        rate_limit_per_second: float | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        settings: ConnectionSettings | None = None,
    ) -> None:
        self.settings = ConnectionSettings.resolve(
            settings,
            api_key,
            project_uid=project_uid,
            base_url=base_url,
            v3_base_url=v3_base_url,
            v4_base_url=v4_base_url,
            rate_limit_per_second=rate_limit_per_second,
        )
        self.retry_policy = retry_policy

    def __repr__(self) -> str:
        settings = self.settings
        return f"{type(self).__name__}(v3={settings.v3_base_url!r}, v4={settings.v4_base_url!r})"

    @cached_property
    def _transport(self) -> SyncTransport:
        return SyncTransport(self.retry_policy)

    @cached_property
    def _live_gate(self) -> SyncRateGate:
        return SyncRateGate(self.settings.rate_limit_per_second)

    def v1_client(self) -> V1Client:
        """A v1 client on this connection: its v1 base URL, key, retry policy, and the plan's
        rate (``rate_limit_per_second``) shared by every v1 call of this worker."""
        from airflow_provider_captaindata.client.v1 import V1Client

        settings = self.settings
        return V1Client(
            settings.api_key.get_secret_value(),
            base_url=settings.v1_base_url,
            rate_limit_per_second=settings.rate_limit_per_second,
            policy=self.retry_policy,
            transport=self._transport,
        )

    def _call(
        self,
        version: ApiVersion,
        method: str,
        path_or_url: str,
        gate: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> ApiResponse:
        request = build_request(self.settings, version, method, path_or_url, **kwargs)
        return self._transport.send(request, gate)

    # -- v3: workflows and runs ("jobs") -------------------------------------------------------

    def get_workspace(self) -> dict[str, Any]:
        """``GET /v3/workspace``: the v3 workspace (name, plan, tasks left)."""
        return self._call(V3, "GET", "/workspace").data

    def list_workflows(self) -> list[V3Workflow]:
        """``GET /v3/workflows``."""
        from airflow_provider_captaindata.client.models import V3Workflow

        return [V3Workflow.model_validate(w) for w in self._call(V3, "GET", "/workflows").data]

    def get_workflow_details(self, workflow_uid: str) -> V3WorkflowDetails:
        """``GET /v3/workflows/{uid}/details``: steps with their input schemas."""
        from airflow_provider_captaindata.client.models import V3WorkflowDetails

        return V3WorkflowDetails.model_validate(
            self._call(V3, "GET", f"/workflows/{workflow_uid}/details").data
        )

    def launch_workflow(
        self,
        workflow_uid: str,
        *,
        inputs: Sequence[Mapping[str, Any]],
        steps: Sequence[Mapping[str, Any]],
        job_name: str | None = None,
        repeat_option: Mapping[str, Any] | None = None,
        unstructure_meta: bool | None = None,
    ) -> V3LaunchAnswer:
        """``POST /v3/workflows/{uid}/schedule``. Never re-sent after an ambiguous failure:
        use :meth:`launch_workflow_once` to launch safely."""
        from airflow_provider_captaindata.client.models import V3LaunchAnswer

        body: dict[str, Any] = {"inputs": [dict(i) for i in inputs], "steps": [dict(s) for s in steps]}
        if job_name:
            body["job_name"] = job_name
        if repeat_option:
            body["repeat_option"] = dict(repeat_option)
        if unstructure_meta is not None:
            body["unstructure_meta"] = unstructure_meta
        data = self._call(V3, "POST", f"/workflows/{workflow_uid}/schedule", json=body, idempotent=False).data
        return V3LaunchAnswer.model_validate(data)

    def launch_workflow_once(
        self, workflow_uid: str, *, job_name: str, stale_run_uids: Sequence[str] = (), **launch_kwargs: Any
    ) -> str:
        """Launch and return the run uid; after an ambiguous failure, look the run up by
        ``job_name`` before trying again, so one call never makes two runs.

        ``stale_run_uids``: earlier runs with the same name (a failed try) that the lookup must
        not mistake for this launch."""
        return launch_once(
            f"workflow {workflow_uid} named {job_name!r}",
            lambda: self.launch_workflow(workflow_uid, job_name=job_name, **launch_kwargs).job_uid,
            lambda since, stale: self.find_workflow_run(workflow_uid, job_name, since=since, exclude=stale),
            stale_run_uids,
            self.retry_policy,
        )

    def list_workflow_runs(self, workflow_uid: str, page: int = 0) -> list[V3Job]:
        """``GET /v3/workflows/{uid}/jobs?page=N``: one page of its runs, newest first."""
        from airflow_provider_captaindata.client.models import V3Job

        data = self._call(V3, "GET", f"/workflows/{workflow_uid}/jobs", params={"page": page}).data
        return [V3Job.model_validate(j) for j in data or []]

    def find_workflow_run(
        self, workflow_uid: str, job_name: str, *, since: float | None = None, exclude: Collection[str] = ()
    ) -> V3Job | None:
        """The newest run of a workflow named ``job_name`` among those created since ``since``
        (epoch seconds; None: every run the API lists, the last two months), page by page,
        passing over the runs in ``exclude`` (see :func:`~.lookups.runs_since`)."""
        pages = (self.list_workflow_runs(workflow_uid, page) for page in itertools.count())
        runs = runs_since(pages, since, V3, f"runs of workflow {workflow_uid}")
        return next((run for run in runs if run.name == job_name and run.uid not in exclude), None)

    def get_workflow_run(self, job_uid: str) -> V3Job:
        """``GET /v3/jobs/{uid}``."""
        from airflow_provider_captaindata.client.models import V3Job

        return V3Job.model_validate(self._call(V3, "GET", f"/jobs/{job_uid}").data)

    def iter_workflow_results(self, job_uid: str) -> Iterator[list[dict[str, Any]]]:
        """``GET /v3/jobs/{uid}/results``, page by page, following ``paging.next``.

        Fails (:class:`CaptainDataPagingError`) rather than loop on a repeated ``next``, stop
        early on a page without ``paging``, or end with fewer or more rows than a finished
        run's ``total_row_count``."""
        from airflow_provider_captaindata.client.models import V3ResultsPage

        trail = PageTrail(f"Results of run {job_uid}")
        url: str | None = self.settings.v3_base_url + f"/jobs/{job_uid}/results"
        while url:
            data = self._call(V3, "GET", url).data
            if not isinstance(data, dict) or not isinstance(data.get("paging"), dict):
                raise CaptainDataPagingError(
                    f"{trail.what}: page {trail.pages + 1} has no paging object, so whether more "
                    "pages follow is unknown; failing rather than returning part of the rows"
                )
            page = V3ResultsPage.model_validate(data)
            yield page.results
            url = trail.next_url(url, resolve_next(url, page.next_url), len(page.results))
        job = self.get_workflow_run(job_uid)
        # (uncertain) total_row_count counts the rows /results returns for a finished run.
        if V3.state_of(job.status).is_success and job.total_row_count not in (None, trail.rows):
            raise CaptainDataPagingError(
                f"{trail.what}: read {trail.rows} rows in {trail.pages} pages, but the run reports "
                f"total_row_count={job.total_row_count}; rows were lost or doubled in the paging"
            )

    def get_workflow_run_inputs(self, job_uid: str) -> Any:
        """``GET /v3/jobs/{uid}/inputs``."""
        return self._call(V3, "GET", f"/jobs/{job_uid}/inputs").data

    def retry_workflow_run(self, job_uid: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``POST /v3/jobs/{uid}/retry``: a sub-run of a failed or paused run."""
        return self._call(V3, "POST", f"/jobs/{job_uid}/retry", json=dict(body or {}), idempotent=False).data

    def stop_workflow_run(self, job_uid: str) -> dict[str, Any]:
        """Stop a v3 run (path uncertain, see :mod:`~airflow_provider_captaindata.client.versions`)."""
        assert V3.stop_path is not None
        return self._call(V3, "POST", V3.stop_path.format(run_uid=job_uid)).data

    def delete_workflow_schedule(self, job_name: str) -> Any:
        """``DELETE /v3/jobs/{job_name}``: remove a repeating schedule, by job name (quoted:
        the operator's names hold ``|`` and ``#``)."""
        return self._call(V3, "DELETE", f"/jobs/{quote(job_name, safe='')}").data

    # -- v4: actions and runs -----------------------------------------------------------------

    def iter_live_pages(
        self,
        action: str,
        input: Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        identity_ids: Sequence[str] | None = None,
        identity_mode: str | None = None,
        integration_users: Sequence[str] | None = None,
    ) -> Iterator[Any]:
        """``POST /v4/actions/{name}/run/live``: yields the answer (an object, or a list of rows)
        and, for search/list actions, each next page from ``X-Pagination-Next``.

        An action with effects (``catalog.has_effects``) is never re-sent after an ambiguous
        failure: it raises :class:`~airflow_provider_captaindata.exceptions.CaptainDataOutcomeUnknown`."""
        validate_action_input(action, input)
        body = action_body(input, parameters, identity_ids, identity_mode, integration_users)
        url: str | None = self.settings.v4_base_url + f"/actions/{action}/run/live"
        trail = PageTrail(f"{action} live pages")
        while url:
            with live_call(action) as idempotent:
                answer = self._call(
                    V4, "POST", url, json=body, gate=self._live_gate.wait, idempotent=idempotent
                )
            yield answer.data
            next_url = next_page_url(answer.headers, url) if isinstance(answer.data, list) else None
            url = trail.next_url(url, next_url, len(answer.data) if isinstance(answer.data, list) else 1)

    def run_action_live(self, action: str, input: Mapping[str, Any], **kwargs: Any) -> Any:
        """One live call: the first answer only (no pagination)."""
        return next(self.iter_live_pages(action, input, **kwargs))

    def run_action_async(
        self,
        action: str,
        inputs: Sequence[Mapping[str, Any]],
        *,
        callback_url: str,
        callback_headers: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        identity_ids: Sequence[str] | None = None,
        identity_mode: str | None = None,
        integration_users: Sequence[str] | None = None,
    ) -> V4Run:
        """``POST /v4/actions/{name}/run/async`` with 1 to 100,000 inputs. Never re-sent after an
        ambiguous failure: use :meth:`run_action_async_once` to launch safely."""
        from airflow_provider_captaindata.client.models import V4Run

        if not 1 <= len(inputs) <= MAX_ASYNC_INPUTS:
            raise CaptainDataConfigError(f"inputs: 1 to {MAX_ASYNC_INPUTS} inputs, got {len(inputs)}")
        for index, item in enumerate(inputs):
            validate_action_input(action, item, where=f"inputs[{index}]")
        body = action_body(None, parameters, identity_ids, identity_mode, integration_users, inputs=inputs)
        body["callback"] = {"url": callback_url, "headers": dict(callback_headers or {})}
        data = self._call(V4, "POST", f"/actions/{action}/run/async", json=body, idempotent=False).data
        return V4Run.model_validate(data)

    def run_action_async_once(
        self,
        action: str,
        inputs: Sequence[Mapping[str, Any]],
        *,
        callback_url: str,
        launch_tag: str,
        stale_run_uids: Sequence[str] = (),
        **launch_kwargs: Any,
    ) -> str:
        """Launch async and return the run uid; after an ambiguous failure, look the run up by
        ``launch_tag`` (a string unique to this launch, part of ``callback_url``) before trying
        again, so one call never makes two runs.

        ``stale_run_uids``: earlier runs with the same tag (a failed try) that the lookup must
        not mistake for this launch."""
        if launch_tag not in callback_url:
            raise CaptainDataConfigError(
                "launch_tag: must be part of callback_url, or no lookup can find the run"
            )
        return launch_once(
            f"{action} async tagged {launch_tag}",
            lambda: self.run_action_async(action, inputs, callback_url=callback_url, **launch_kwargs).uid,
            lambda since, stale: self.find_action_run_by_callback(
                action, launch_tag, since=since, exclude=stale
            ),
            stale_run_uids,
            self.retry_policy,
        )

    def get_action_run(self, run_uid: str) -> V4Run:
        """``GET /v4/runs/{uid}``."""
        from airflow_provider_captaindata.client.models import V4Run

        return V4Run.model_validate(self._call(V4, "GET", f"/runs/{run_uid}").data)

    def list_action_runs(
        self,
        *,
        status: str | None = None,
        action_name: str | None = None,
        execution_mode: str | None = None,
        limit: int = 100,
        offset: int = 0,
        sort: str = "-created_at",
    ) -> list[V4Run]:
        """``GET /v4/runs`` with its filters (``limit`` up to 100)."""
        from airflow_provider_captaindata.client.models import V4Run

        params = v4_runs_params(
            status=status,
            action_name=action_name,
            execution_mode=execution_mode,
            limit=limit,
            offset=offset,
            sort=sort,
        )
        return [V4Run.model_validate(r) for r in self._call(V4, "GET", "/runs", params=params).data or []]

    def find_action_run_by_callback(
        self, action: str, marker: str, *, since: float | None = None, exclude: Collection[str] = ()
    ) -> V4Run | None:
        """The newest async run of ``action`` whose callback URL contains ``marker`` (the launch
        tag) among those created since ``since`` (epoch seconds; None: all), page by page,
        passing over the runs in ``exclude`` (see :func:`~.lookups.runs_since`)."""

        def pages() -> Iterator[list[V4Run]]:
            for offset in itertools.count(0, 100):
                runs = self.list_action_runs(action_name=action, execution_mode="ASYNC", offset=offset)
                yield runs
                if len(runs) < 100:
                    return

        runs = runs_since(pages(), since, V4, f"async runs of {action}")
        return next(
            (
                run
                for run in runs
                if marker in str((run.callback or {}).get("url") or "") and run.uid not in exclude
            ),
            None,
        )

    def resume_action_run(self, run_uid: str) -> V4Run:
        """``POST /v4/runs/{uid}/resume``: resume a stopped run."""
        from airflow_provider_captaindata.client.models import V4Run

        return V4Run.model_validate(self._call(V4, "POST", f"/runs/{run_uid}/resume", idempotent=False).data)

    def list_run_callbacks(
        self, run_uid: str, *, limit: int = 20, offset: int = 0, sort: str = "created_at"
    ) -> list[V4CallbackRecord]:
        """``GET /v4/runs/callbacks?run_uid=``: one page (``limit`` up to 20) of the delivery
        records of an async run's result pages."""
        from airflow_provider_captaindata.client.models import V4CallbackRecord

        params = {"run_uid": run_uid, "limit": limit, "offset": offset, "sort": sort}
        data = self._call(V4, "GET", "/runs/callbacks", params=params).data
        return [V4CallbackRecord.model_validate(r) for r in data or []]

    def replay_run_callback(self, callback_uid: str) -> dict[str, Any]:
        """``POST /v4/runs/callbacks/{uid}/replay``: re-send one page (at most 3 times)."""
        return self._call(V4, "POST", f"/runs/callbacks/{callback_uid}/replay", idempotent=False).data

    def schedule_action(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v4/actions/{name}/run/schedule`` (body as async plus ``cron`` or ``schedule_at``)."""
        return self._call(
            V4, "POST", f"/actions/{action}/run/schedule", json=dict(body), idempotent=False
        ).data

    def list_schedules(self) -> list[dict[str, Any]]:
        """``GET /v4/schedules``."""
        return self._call(V4, "GET", "/schedules").data

    def get_schedule(self, schedule_uid: str) -> dict[str, Any]:
        """``GET /v4/schedules/{uid}``."""
        return self._call(V4, "GET", f"/schedules/{schedule_uid}").data

    def change_schedule(self, schedule_uid: str, change: str) -> dict[str, Any]:
        """``POST /v4/schedules/{uid}/{pause|resume|cancel}``."""
        if change not in ("pause", "resume", "cancel"):
            raise CaptainDataConfigError(f"change must be 'pause', 'resume' or 'cancel', not {change!r}")
        return self._call(V4, "POST", f"/schedules/{schedule_uid}/{change}").data

    def get_workspaces(self) -> Any:
        """``GET /v4/workspaces``: name, plan and credits (the cheap v4 auth check)."""
        return self._call(V4, "GET", "/workspaces").data

    def list_identities(self) -> Any:
        """``GET /v4/identities``: connected users that run actions (path not in the OpenAPI document)."""
        return self._call(V4, "GET", "/identities").data

    def list_integrations(self) -> Any:
        """``GET /v4/integrations`` (path not in the OpenAPI document)."""
        return self._call(V4, "GET", "/integrations").data

    # -- both versions ------------------------------------------------------------------------

    def get_run(self, api_version: str, run_uid: str) -> RunSnapshot:
        """A run of either version, read as uid, status, RunState and error message."""
        version = get_version(api_version)
        return version.snapshot(self._call(version, "GET", version.run_path.format(run_uid=run_uid)).data)

    def stop_run(self, api_version: str, run_uid: str) -> bool:
        """Stop a run; False when the API version cannot stop runs (v4)."""
        version = get_version(api_version)
        if version.stop_path is None:
            return False
        self._call(version, "POST", version.stop_path.format(run_uid=run_uid))
        return True
