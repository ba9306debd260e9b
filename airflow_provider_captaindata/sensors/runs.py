"""``CaptainDataRunSensor``: wait for a run started elsewhere (the UI, a schedule, another DAG)."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.client.versions import get_version
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataRunError,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.links import RUN_UID_KEY, CaptainDataRunLink, push_run_url, run_url
from airflow_provider_captaindata.operators.base import default_deferrable, fail_without_retry_on_bad_request
from airflow_provider_captaindata.params import (
    check_conn_id,
    check_flag,
    is_templated,
    seconds,
)
from airflow_provider_captaindata.waiting import RunWaiter, checked_event, keeps_waiting

if TYPE_CHECKING:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook


# Where a reschedule-mode sensor keeps, between pokes, since when the run has been paused.
PAUSED_SINCE_KEY = "captaindata_paused_since"


class CaptainDataRunSensor(BaseSensorOperator):
    """Succeed when a Captain Data run succeeds; fail with the remote error when it fails.

    :param run_uid: the run to wait on (v3 job uid or v4 run uid; templated).
    :param api_version: ``"v3"`` (default) or ``"v4"``; not templated (it chooses the API polled),
        so a Jinja string or an XComArg is refused when the DAG is parsed.
    :param captaindata_conn_id: Airflow connection of type ``captaindata``.
    :param deferrable: wait on the triggerer (default from ``[operators] default_deferrable``);
        ``poke_interval`` is the poll interval in both modes, ``timeout`` the sensor's limit.
    :param paused_grace_period: seconds a v3 run may stay ``paused`` before the sensor fails
        (in ``mode="reschedule"``, counted across pokes on Airflow 3.3+ only).

    Returns ``{run_uid, run_status}``. A v4 ``PARTIAL_SUCCEEDED`` run counts as success.
    """

    template_fields = ("run_uid", "captaindata_conn_id")
    operator_extra_links = (CaptainDataRunLink(),)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        run_uid: str,
        api_version: str = "v3",
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        paused_grace_period: float | timedelta = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if is_templated(api_version):
            raise CaptainDataConfigError(
                f"api_version cannot be templated (got {api_version!r:.80}): it is not a template "
                "field, because it chooses the API (v3 or v4) the sensor polls. Pass 'v3' or 'v4' "
                "as a literal; for runs of both kinds, use one sensor per version."
            )
        get_version(api_version)
        check_conn_id(captaindata_conn_id)
        if deferrable is not None:
            check_flag("deferrable", deferrable)
        self.run_uid = run_uid
        self.api_version = api_version
        self.captaindata_conn_id = captaindata_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.paused_grace_period = seconds("paused_grace_period", paused_grace_period)
        if not is_templated(run_uid):
            self._check_run_uid()
        if self.deferrable:  # the trigger needs a positive poll interval and timeout
            seconds("poke_interval", self.poke_interval)
            seconds("timeout", self.timeout, optional=True)
        self._waiter: RunWaiter | None = None
        self._last_status: str | None = None

    @cached_property
    def hook(self) -> CaptainDataHook:
        from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

        return CaptainDataHook(self.captaindata_conn_id)

    def captaindata_run_url(self) -> str | None:
        """The link this try pushed, or, resumed after a deferral, the run's; None when the
        run uid was refused (nothing was pushed)."""
        pushed = getattr(self, "_captaindata_run_url", None)
        resumed = isinstance(self.run_uid, str) and self.run_uid.strip() and not is_templated(self.run_uid)
        return pushed or (run_url(self.api_version, self.run_uid) if resumed else None)

    def _check_run_uid(self) -> None:
        if not isinstance(self.run_uid, str) or not self.run_uid.strip():
            raise CaptainDataConfigError(f"run_uid must be a non-empty string, got {self.run_uid!r}")

    def execute(self, context: Any) -> Any:
        # A bad run uid or connection, or a run the API refuses (404, 401): another try would
        # meet the same answer, so the task fails without its retries, as the operators do.
        with fail_without_retry_on_bad_request():
            return self._execute(context)

    def _execute(self, context: Any) -> Any:
        self._check_run_uid()
        ti = context["ti"]
        ti.xcom_push(key=RUN_UID_KEY, value=self.run_uid)
        push_run_url(self, ti, run_url(self.api_version, self.run_uid))
        if not self.deferrable:
            super().execute(context)
            return self._result()
        if self.poke(context):
            return self._result()
        from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

        timeout = seconds("timeout", self.timeout, optional=True)
        self.defer(
            trigger=CaptainDataRunTrigger(
                run_uid=self.run_uid,
                api_version=self.api_version,
                captaindata_conn_id=self.captaindata_conn_id,
                poll_interval=seconds("poke_interval", self.poke_interval),
                timeout_at=time.time() + timeout if timeout else None,
                paused_grace_period=self.paused_grace_period,
                paused_since=self._waiter.paused_since if self._waiter else None,
                stop_on_kill=False,  # the sensor did not start this run: never stop it
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def _poke_waiter(self, context: Any) -> RunWaiter:
        # In reschedule mode each poke is a new process, so nothing it knows survives in
        # memory: since when the run has been paused lives in the task state store (3.3+).
        if self._waiter is None or self.mode == "reschedule":
            self._waiter = RunWaiter(
                self.run_uid, self.api_version, paused_grace_period=self.paused_grace_period
            )
            store = context.get("task_state_store")
            if self.mode == "reschedule" and store is not None:
                self._waiter.paused_since = store.get(PAUSED_SINCE_KEY)
        return self._waiter

    def poke(self, context: Any) -> bool:
        waiter = self._poke_waiter(context)
        paused_since = waiter.paused_since
        try:
            snapshot = self.hook.get_run(self.api_version, self.run_uid)
        except (CaptainDataAPIError, CaptainDataTransportError) as exc:
            if not keeps_waiting(exc, self.run_uid, self.log, then="poking again"):
                raise
            return False
        if waiter.status_changed(snapshot):
            self.log.info("Run %s is %s", self.run_uid, snapshot.status)
        event = waiter.on_snapshot(snapshot)
        store = context.get("task_state_store")
        if self.mode == "reschedule" and store is not None and waiter.paused_since != paused_since:
            # The store refuses None (ValueError on 3.3): a run no longer paused deletes the key.
            if waiter.paused_since is None:
                store.delete(PAUSED_SINCE_KEY)
            else:
                store.set(PAUSED_SINCE_KEY, waiter.paused_since)
        if event is None:
            return False
        self._last_status = snapshot.status
        if event["status"] == "success":
            return True
        raise CaptainDataRunError(self.run_uid, snapshot.status, event["message"])

    def _result(self) -> dict[str, Any]:
        return {"run_uid": self.run_uid, "run_status": self._last_status}

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        event = checked_event(event)
        if event["status"] == "success":
            self._last_status = event.get("run_status")
            return self._result()
        if event["status"] == "timeout":
            raise AirflowSensorTimeout(f"Run {self.run_uid} was not done after timeout={self.timeout} s")
        raise CaptainDataRunError(
            self.run_uid, str(event.get("run_status") or event["status"]), event.get("message") or ""
        )
