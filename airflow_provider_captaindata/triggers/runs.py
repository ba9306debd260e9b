"""``CaptainDataRunTrigger``: waits on a v3 or v4 run on the triggerer, without side effects.

It only polls (the launch happened on the worker), retries transient errors inside, and
emits one event from a closed vocabulary. Its kwargs are JSON primitives: a connection id,
never a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.client.versions import get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataError,
)
from airflow_provider_captaindata.params import check_conn_id, check_flag, non_empty_string, seconds
from airflow_provider_captaindata.waiting import RunWaiter, keeps_waiting, run_event

log = logging.getLogger(__name__)


class CaptainDataRunTrigger(BaseTrigger):
    """Poll a Captain Data run until it is final, a deadline passes, or it stays paused too long.

    :param run_uid: the run (v3 job uid or v4 run uid).
    :param api_version: ``"v3"`` or ``"v4"``.
    :param captaindata_conn_id: the Airflow connection to read the key from, on the triggerer.
    :param poll_interval: seconds between two status reads.
    :param timeout_at: epoch seconds after which waiting stops (the run is left running).
    :param execution_deadline_at: epoch seconds by which the task's ``execution_timeout``
        needs the worker back to stop the run.
    :param paused_grace_period: seconds a v3 run may stay ``paused`` before the wait fails.
    :param stop_on_kill: stop the run when a user kills the deferred task (Airflow 3.3+).
    :param paused_since: epoch seconds since when the run is known to be ``paused`` (seen by
        the worker before deferring): the grace period counts from there, not from the start.

    Airflow stores the kwargs once, at deferral: a trigger re-created after a triggerer restart
    starts from them again, so a pause it had seen is counted afresh from the restart (the
    wait can last up to one more grace period). The deadlines are absolute times and hold.
    """

    def __init__(
        self,
        *,
        run_uid: str,
        api_version: str = "v3",
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 30.0,
        timeout_at: float | None = None,
        execution_deadline_at: float | None = None,
        paused_grace_period: float = 600.0,
        stop_on_kill: bool = True,
        paused_since: float | None = None,
    ) -> None:
        super().__init__()
        # Checked here, not at defer time: Airflow 3.2+ rejects non-primitive kwargs only after
        # the remote run has started.
        non_empty_string("run_uid", run_uid)
        get_version(api_version)
        check_conn_id(captaindata_conn_id)
        seconds("poll_interval", poll_interval)
        seconds("timeout_at", timeout_at, optional=True, lower="any")
        seconds("execution_deadline_at", execution_deadline_at, optional=True, lower="any")
        seconds("paused_grace_period", paused_grace_period, lower="any")
        seconds("paused_since", paused_since, optional=True, lower="any")
        check_flag("stop_on_kill", stop_on_kill)
        self.run_uid = run_uid
        self.api_version = api_version
        self.captaindata_conn_id = captaindata_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout_at = timeout_at
        self.execution_deadline_at = execution_deadline_at
        self.paused_grace_period = float(paused_grace_period)
        self.stop_on_kill = stop_on_kill
        self.paused_since = paused_since

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_uid": self.run_uid,
                "api_version": self.api_version,
                "captaindata_conn_id": self.captaindata_conn_id,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
                "execution_deadline_at": self.execution_deadline_at,
                "paused_grace_period": self.paused_grace_period,
                "stop_on_kill": self.stop_on_kill,
                "paused_since": self.paused_since,
            },
        )

    def _hook(self) -> Any:
        from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

        return CaptainDataAsyncHook(self.captaindata_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        waiter = RunWaiter(
            run_uid=self.run_uid,
            api_version=self.api_version,
            timeout_at=self.timeout_at,
            execution_deadline_at=self.execution_deadline_at,
            paused_grace_period=self.paused_grace_period,
            paused_since=self.paused_since,
        )
        while True:
            event = None
            try:
                # A read may take minutes (timeouts, retries, Retry-After): it must not carry
                # the wait past a deadline, so it gets only the time left (none once passed).
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result of
                # a read that completes as the trigger is cancelled, losing the cancellation.
                async with asyncio.timeout(waiter.time_left()):
                    snapshot = await hook.get_run(self.api_version, self.run_uid)
            except TimeoutError:
                log.warning("Run %s: no status before the deadline", self.run_uid)
            except CaptainDataError as exc:
                if not keeps_waiting(exc, self.run_uid, log):
                    event = run_event("error", self.run_uid, api_version=self.api_version, message=str(exc))
            else:
                first = waiter.last_status is None
                changed = waiter.status_changed(snapshot)
                event = waiter.on_snapshot(snapshot)
                if first:
                    # One line when the wait starts, so a long wait does not look hung.
                    log.info(
                        "Run %s is %s: polling every %s s", self.run_uid, snapshot.status, self.poll_interval
                    )
                elif changed:
                    log.info("Run %s is %s", self.run_uid, snapshot.status)
            event = event or waiter.on_clock()
            if event is not None:
                yield TriggerEvent(event)
                return
            await asyncio.sleep(waiter.sleep_for(self.poll_interval))

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user killed the deferred task, so stop the run (never on a restart,
        nor when another triggerer took the wait over)."""
        if not self.stop_on_kill:
            return
        if await self._task_goes_on():
            log.info("Run %s keeps running: its wait moved to another triggerer", self.run_uid)
            return
        try:
            stopped = await self._hook().stop_run(self.api_version, self.run_uid)
        except CaptainDataError as exc:
            log.error("Could not stop run %s: %s", self.run_uid, exc)
            return
        if stopped:
            log.info("Stopped run %s because the task was killed", self.run_uid)
        else:
            log.warning("Run %s keeps running: the %s API cannot stop runs", self.run_uid, self.api_version)

    async def _task_goes_on(self) -> bool:
        """Whether this trigger's task instance goes on: still deferred (its wait on another
        triggerer), or already resumed by that triggerer's event (scheduled, queued, running).
        Airflow 3.3 cancels "by user action", with ``on_kill``, every trigger a triggerer no
        longer holds, also one that another triggerer took over (this one's heartbeat was late:
        a stall, a loaded machine): that task was not killed, and its run must go on. False
        when unknown (no task instance, or the state cannot be read): the kill is taken as asked."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return False
        try:
            from airflow.sdk.execution_time import task_runner
            from airflow.sdk.execution_time.comms import GetTaskStates

            map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None
            answer = await task_runner.SUPERVISOR_COMMS.asend(
                GetTaskStates(
                    dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=map_index
                )
            )
            key = ti.task_id if map_index is None else f"{ti.task_id}_{map_index}"
            states: dict[str, dict[str, Any]] = getattr(answer, "task_states", None) or {}
            state = states.get(ti.run_id, {}).get(key)
        except (ImportError, AttributeError, RuntimeError, OSError) as exc:
            log.warning("Could not read the state of %s (%s): taking the kill as asked", ti.task_id, exc)
            return False
        return state in ("deferred", "scheduled", "queued", "running")
