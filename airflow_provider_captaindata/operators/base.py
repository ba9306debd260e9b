"""What every run-launching operator shares: remembering the run, waiting on it (deferred or on
the worker), failing closed on events, stopping it on kill or execution timeout, and writing
its results to XCom or object storage.

Subclasses say how to launch (or find) a run and how to read its result pages.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, conf

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.client.statuses import RunState
from airflow_provider_captaindata.client.versions import get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataError,
    CaptainDataRunError,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.launch_identity import LaunchIdentity, airflow_deployment, identity_for
from airflow_provider_captaindata.links import RUN_UID_KEY, CaptainDataRunLink, push_run_url, run_url
from airflow_provider_captaindata.params import check_flag, seconds, whole_number
from airflow_provider_captaindata.preflight import check_trigger_can_read_connection
from airflow_provider_captaindata.results import (
    DEFAULT_MAX_XCOM_BYTES,
    aborted_on_error,
    instance_output_path,
    object_storage_path,
    open_sink,
)
from airflow_provider_captaindata.waiting import (
    DEADLINE_EXECUTION,
    RunWaiter,
    checked_event,
    execution_deadline,
    iso_time,
    keeps_waiting,
)

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.statuses import RunSnapshot
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

STATE_STORE_KEY = "captaindata_run_uid"  # {"run_uid": ..., "launch": LaunchIdentity.digest}


class CaptainDataRunStoppedError(CaptainDataRunError, AirflowFailException):
    """The run was stopped in Captain Data (by a user), not by the task: the task fails
    without its retries, since a retry would launch the run again."""


def default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


@contextmanager
def fail_without_retry_on_bad_request() -> Iterator[None]:
    """Bad parameters and refused launches (4xx but 429) fail the task without task retries:
    another try would be refused the same way, or launch again for nothing."""
    try:
        yield
    except CaptainDataConfigError as exc:
        raise AirflowFailException(str(exc)) from exc
    except CaptainDataAPIError as exc:
        if 400 <= exc.status_code < 500 and exc.status_code != 429:
            raise AirflowFailException(str(exc)) from exc
        raise


class CaptainDataRunOperatorBase(BaseOperator):
    """Base of the operators that start one Captain Data run and wait for it.

    :param captaindata_conn_id: Airflow connection of type ``captaindata``.
    :param wait_for_completion: wait for the run to end (default True); if False, return the
        run uid as soon as it is launched.
    :param deferrable: wait on the triggerer instead of holding a worker slot (default from
        ``[operators] default_deferrable``).
    :param poll_interval: seconds between two status reads.
    :param timeout: how long to wait for the run (seconds or timedelta). When it passes, the
        task fails and the run is left running. Use ``execution_timeout`` to stop the run too.
    :param paused_grace_period: seconds a run may stay ``paused`` (an integration needs
        attention) before the task fails.
    :param fetch_results: collect the run's results when it succeeds (default True).
    :param output_path: object-storage path or URI (``file:///...``, ``s3://...``) of a JSON
        Lines file to stream results to; XCom then gets only ``{path, rows, run_uid}``. A
        mapped task instance writes ``.map-{map_index}`` before the path's last suffix
        (``out.jsonl`` -> ``out.map-3.jsonl``): two instances never write one object.
    :param max_xcom_bytes: without ``output_path``, the most JSON that may go to XCom; more
        fails the task with a hint to set ``output_path`` (rows are never dropped silently).
    """

    api_version: ClassVar[str] = "v3"
    landed: dict[str, Any] | None = None  # what the results were (assets.record_landed), for lineage
    operator_extra_links = (CaptainDataRunLink(),)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float | timedelta = 30.0,
        timeout: float | timedelta | None = None,
        paused_grace_period: float | timedelta = 600.0,
        fetch_results: bool = True,
        output_path: str | None = None,
        max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_flag("wait_for_completion", wait_for_completion)
        if deferrable is not None:
            check_flag("deferrable", deferrable)
        check_flag("fetch_results", fetch_results)
        self.captaindata_conn_id = captaindata_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = seconds("poll_interval", poll_interval)
        self.timeout_seconds = seconds("timeout", timeout, optional=True)
        self.paused_grace_period = seconds("paused_grace_period", paused_grace_period)
        self.fetch_results = fetch_results
        self.output_path = output_path
        self.max_xcom_bytes = whole_number("max_xcom_bytes", max_xcom_bytes, minimum=1)
        self._run_uid: str | None = None
        # Set while a launch is in flight: the earlier runs its lookup must skip. A kill in
        # that window finds the run by name or tag (see on_kill).
        self._skip_while_launching: list[str] | None = None
        self._stopped_runs: set[str] = set()  # runs this task stopped (kill, execution_timeout)
        self._identity: LaunchIdentity | None = None
        self._output_bound = False

    # -- to implement -------------------------------------------------------------------------

    def validate_rendered(self) -> None:
        """Check the rendered parameters; raise CaptainDataConfigError naming the parameter."""

    def launch(self, context: Any, stale_run_uids: list[str]) -> str:
        """Launch the run and return its uid. ``stale_run_uids``: earlier runs of this task
        instance that ended badly, which the lookup after an ambiguous failure must skip."""
        raise NotImplementedError

    def launch_fingerprint(self) -> dict[str, Any]:
        """Everything the launch sends that changes the run (rendered values): part of the
        launch identity, so a run launched with other values is never resumed."""
        raise NotImplementedError

    def find_earlier_run(self, context: Any, exclude: Sequence[str]) -> tuple[RunSnapshot | None, str]:
        """The newest run an earlier try of this same launch made (see :meth:`launch_identity`),
        found by its launch name or tag among the runs created since the first try
        (:func:`~airflow_provider_captaindata.launch_identity.lookup_since`), passing over the
        runs in ``exclude``, and how it was found (for the log)."""
        raise NotImplementedError

    def result_pages(self, run_uid: str) -> Iterable[list[dict[str, Any]]]:
        """The run's results, page by page, each row once."""
        raise NotImplementedError

    def on_run_failed(self, context: Any, event: dict[str, Any], retries_done: int) -> str | None:
        """A failed run may be retried: return the new run uid to wait on, or None to fail."""
        return None

    # -- shared flow --------------------------------------------------------------------------

    @property
    def run_uid(self) -> str | None:
        """The run this task launched or resumed; None before (read by assets and lineage)."""
        return self._run_uid

    @cached_property
    def hook(self) -> CaptainDataHook:
        from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

        return CaptainDataHook(self.captaindata_conn_id)

    def bind_output_path(self, context: Any) -> None:
        """Make ``output_path`` this task instance's own object (see the parameter), once per
        execution, before anything reads it."""
        if not self._output_bound:
            self._output_bound = True
            map_index = getattr(context.get("ti"), "map_index", None)
            self.output_path = instance_output_path(self.output_path, map_index)

    def execute(self, context: Any) -> Any:
        self.bind_output_path(context)
        with fail_without_retry_on_bad_request():
            if self.output_path:
                object_storage_path(self.output_path)  # an unusable scheme fails before any launch
            self.validate_rendered()
            if self.deferrable and self.wait_for_completion:
                check_trigger_can_read_connection(self.captaindata_conn_id, context)
            run_uid = self.launch_or_resume(context)
        if not self.wait_for_completion:
            return run_uid
        return self.wait(context, run_uid)

    def launch_identity(self, context: Any) -> LaunchIdentity:
        """This launch: the task instance, the deployment (the connection's ``deployment``, or
        the host Airflow is served at) and the fingerprint of what is launched."""
        if self._identity is None:
            deployment = self.hook.settings.deployment or airflow_deployment()
            self._identity = identity_for(context, deployment, self.launch_fingerprint())
        return self._identity

    def remembered_run(self, context: Any) -> str | None:
        """The run uid an earlier try of this same launch stored (Airflow 3.3+
        task_state_store), if any: a run stored for other inputs is not this launch's."""
        store = context.get("task_state_store")
        stored = store.get(STATE_STORE_KEY) if store is not None else None
        if not isinstance(stored, dict) or not stored.get("run_uid"):
            return None
        if stored.get("launch") != self.launch_identity(context).digest:
            self.log.info(
                "Run %s in task_state_store was another launch (other inputs): not resumed", stored["run_uid"]
            )
            return None
        return str(stored["run_uid"])

    def launch_or_resume(self, context: Any) -> str:
        """Return the uid of the run to wait on, launching it only when no earlier try did."""
        run_uid, stale = self.earlier_run(context)
        if run_uid is None:
            self._skip_while_launching = stale
            run_uid = self.launch(context, stale)
        self.remember_run(context, run_uid)
        self._skip_while_launching = None
        return run_uid

    def earlier_run(self, context: Any) -> tuple[str | None, list[str]]:
        """(the run an earlier try launched, if still worth waiting on or collecting; the
        earlier runs that ended badly, which a relaunch must not take for its own).

        The state store only saves a lookup: when the run it names ended badly, a later try
        may still have launched one it could not record (a lost answer, a killed worker), so
        the lookup by name or tag runs too."""
        stale: list[str] = []
        remembered = self.remembered_run(context)
        if remembered:
            snapshot = self.hook.get_run(self.api_version, remembered)
            if self._worth_resuming(snapshot, "remembered in task_state_store"):
                return snapshot.uid, stale
            stale.append(snapshot.uid)
        # Every match, not only the newest: "newest" is by Captain Data's clocks, so a failed
        # run of an earlier try may be listed above the run a later try launched.
        found, how = self.find_earlier_run(context, stale)
        while found is not None:
            if self._worth_resuming(found, how):
                return found.uid, stale
            stale.append(found.uid)
            found, how = self.find_earlier_run(context, stale)
        self.log.info("No earlier run to wait on: launching")
        return None, stale

    def _worth_resuming(self, snapshot: RunSnapshot, how: str) -> bool:
        if snapshot.state is RunState.UNKNOWN:
            # It may well be running: launching again could double the run (and its credits).
            raise CaptainDataRunError(
                snapshot.uid,
                snapshot.status,
                f"earlier run {snapshot.uid} ({how}) is in status {snapshot.status!r}, which this "
                "provider does not know: not launching again while it may still be running. "
                "Check the run in Captain Data; the next try resumes it once its status is known.",
            )
        if get_version(self.api_version).on_hold(snapshot.status):
            raise CaptainDataRunError(
                snapshot.uid,
                snapshot.status,
                f"earlier run {snapshot.uid} ({how}) is {snapshot.status}: Captain Data can resume "
                "it, and a new run beside it would act on the same inputs twice, so none is "
                "launched. Resume it in Captain Data, then clear this task: the next try waits on it.",
            )
        if snapshot.state.is_success or not snapshot.state.is_final:
            self.log.info("Run %s (%s) is %s: not launching again", snapshot.uid, how, snapshot.status)
            return True
        self.log.info("Earlier run %s (%s) ended %s", snapshot.uid, how, snapshot.status)
        return False

    def remember_run(self, context: Any, run_uid: str) -> None:
        """Record the run before anything else can fail, then show it in XCom and the link."""
        self._run_uid = run_uid
        store = context.get("task_state_store")
        if store is not None:
            store.set(STATE_STORE_KEY, {"run_uid": run_uid, "launch": self.launch_identity(context).digest})
        ti = context["ti"]
        ti.xcom_push(key=RUN_UID_KEY, value=run_uid)
        push_run_url(self, ti, run_url(self.api_version, run_uid))

    def captaindata_run_url(self) -> str | None:
        """The link this try pushed, or, resumed after a deferral, its run's; None before a run."""
        pushed = getattr(self, "_captaindata_run_url", None)
        return pushed or (run_url(self.api_version, self._run_uid) if self._run_uid else None)

    def wait(self, context: Any, run_uid: str, retries_done: int = 0) -> Any:
        self._run_uid = run_uid
        waiter = self._waiter(context, run_uid)
        # Check once before deferring: a run that is already final needs no trigger.
        event = self._poll_once(waiter, run_uid)
        if event is None and self.deferrable:
            from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

            self.log.info(
                "Deferring: the triggerer polls run %s every %s s (wait deadline %s, hard deadline %s)",
                run_uid,
                self.poll_interval,
                iso_time(waiter.timeout_at),
                iso_time(waiter.execution_deadline_at),
            )

            self.defer(
                trigger=CaptainDataRunTrigger(
                    run_uid=run_uid,
                    api_version=self.api_version,
                    captaindata_conn_id=self.captaindata_conn_id,
                    poll_interval=self.poll_interval,
                    timeout_at=waiter.timeout_at,
                    execution_deadline_at=waiter.execution_deadline_at,
                    paused_grace_period=self.paused_grace_period,
                    paused_since=waiter.paused_since,
                ),
                method_name="execute_complete",
                kwargs={"retries_done": retries_done},
                # No framework timeout: the trigger's own deadlines hand the task back first,
                # so the run can be stopped (Airflow's would fail the task without calling us).
                timeout=None,
            )
        while event is None:
            time.sleep(waiter.sleep_for(self.poll_interval))
            event = self._poll_once(waiter, run_uid)
        return self.finish(context, event, retries_done)

    def _waiter(self, context: Any, run_uid: str) -> RunWaiter:
        ti = context.get("ti")
        return RunWaiter(
            run_uid=run_uid,
            api_version=self.api_version,
            timeout_at=time.time() + self.timeout_seconds if self.timeout_seconds else None,
            execution_deadline_at=execution_deadline(getattr(ti, "start_date", None), self.execution_timeout),
            paused_grace_period=self.paused_grace_period,
        )

    def _poll_once(self, waiter: RunWaiter, run_uid: str) -> dict[str, Any] | None:
        try:
            snapshot = self.hook.get_run(self.api_version, run_uid)
        except (CaptainDataAPIError, CaptainDataTransportError) as exc:
            if not keeps_waiting(exc, run_uid, self.log):
                raise
            return waiter.on_clock()
        if waiter.status_changed(snapshot):
            self.log.info("Run %s is %s", run_uid, snapshot.status)
        return waiter.on_snapshot(snapshot)

    def execute_complete(self, context: Any, event: Any = None, retries_done: int = 0) -> Any:
        """Resume after the trigger; anything but a known event fails the task (fail closed)."""
        event = checked_event(event)
        self.bind_output_path(context)
        self._run_uid = event["run_uid"]
        return self.finish(context, event, retries_done)

    def finish(self, context: Any, event: dict[str, Any], retries_done: int) -> Any:
        run_uid, status = event["run_uid"], event["status"]
        if status == "success":
            self.check_success(event)
            result = (
                self.collect(context, run_uid) if self.fetch_results else {"run_uid": run_uid, "rows": None}
            )
            from airflow_provider_captaindata.assets import record_landed  # not needed to parse a DAG

            return record_landed(self, context, result)
        if status == "timeout":
            if event.get("deadline") == DEADLINE_EXECUTION:
                stopped = self._stop(run_uid, "the task's execution_timeout is reached")
                raise CaptainDataRunError(
                    run_uid,
                    "timed out",
                    "execution_timeout reached; "
                    + ("the run was stopped" if stopped else "the run could not be stopped and keeps going"),
                )
            raise CaptainDataRunError(
                run_uid,
                "still running",
                f"stopped waiting after timeout={self.timeout_seconds} s; the run keeps going "
                "(set execution_timeout to stop it instead)",
            )
        if status == "error":
            new_run = self.on_run_failed(context, event, retries_done)
            if new_run:
                return self.wait(context, new_run, retries_done + 1)
        if status == "cancelled" and run_uid not in self._stopped_runs:
            # Someone stopped it in Captain Data: a task retry would launch it again.
            raise CaptainDataRunStoppedError(
                run_uid,
                str(event.get("run_status") or status),
                f"{event.get('message') or status}. It was stopped in Captain Data, not by this "
                "task: failing without task retries, which would launch it again. Clear the task "
                "to launch a new run.",
            )
        raise CaptainDataRunError(
            run_uid, str(event.get("run_status") or status), event.get("message") or status
        )

    def check_success(self, event: dict[str, Any]) -> None:
        """Hook for partial successes (v4); v3 successes are plain."""

    def collect(self, context: Any, run_uid: str) -> Any:
        with aborted_on_error(open_sink(self.output_path, max_xcom_bytes=self.max_xcom_bytes)) as sink:
            for pages, page in enumerate(self.result_pages(run_uid), start=1):
                sink.add_page(page)
                self.log.info("Run %s: page %s fetched, %s rows so far", run_uid, pages, sink.rows)
            return sink.finish(run_uid=run_uid)

    # OpenLineage (the ``openlineage`` extra): see lineage.py, imported only when called.
    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_provider_captaindata.lineage import operator_lineage

        return operator_lineage(self, "start")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_provider_captaindata.lineage import operator_lineage

        return operator_lineage(self, "complete")

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        from airflow_provider_captaindata.lineage import operator_lineage

        return operator_lineage(self, "failure")

    def _stop(self, run_uid: str, why: str) -> bool:
        """Stop the run; False when it could not be (v4 has no stop endpoint, or the call failed)."""
        try:
            self._stopped_runs.add(run_uid)
            if self.hook.stop_run(self.api_version, run_uid):
                self.log.warning("Stopped run %s: %s", run_uid, why)
                return True
            self.log.warning("Run %s keeps running (%s): its API cannot stop runs", run_uid, why)
        except CaptainDataError as exc:
            self.log.error("Could not stop run %s (%s): %s", run_uid, why, exc)
        return False

    def on_kill(self) -> None:
        run_uid = self._run_uid or self._run_of_this_try()
        if run_uid:
            self._stop(run_uid, "the task was killed")

    def _run_of_this_try(self) -> str | None:
        """The run this try launched when this instance does not hold it: killed while the
        launch was in flight, or a new instance resumed from a deferral (Airflow 2 kills it
        before ``execute_complete`` when ``execution_timeout`` passed while deferred)."""
        from airflow.providers.common.compat.sdk import get_current_context

        try:
            context = get_current_context()
            ti = context["ti"]
            run_uid = ti.xcom_pull(task_ids=ti.task_id, key=RUN_UID_KEY, map_indexes=ti.map_index)
            if run_uid:
                return run_uid
            if self._skip_while_launching is None:  # no launch in flight: nothing was created
                return None
            found, how = self.find_earlier_run(context, self._skip_while_launching)
        except Exception as exc:  # on_kill must not raise: say why nothing could be stopped
            self.log.warning("Killed before the run was known; could not look it up: %s", exc)
            return None
        if found is None or found.state.is_final:
            return None
        self.log.warning("Killed while launching: run %s (%s) was created", found.uid, how)
        return found.uid
