"""What the v1 operators share: the connection's v1 client, the credit check, and landing
results (XCom or a JSON Lines file, Assets, OpenLineage) as the v3/v4 operators do.

Credits are read from ``GET /quotas`` before and after the work (once each: ``/quotas`` has
its own low rate limit), so the amount spent is the API's own figure, never an estimate. The
estimate is only for the credit check, which refuses to start a task that would cost more than
``credits_left``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.exceptions import (
    CaptainDataConfigError,
    CaptainDataCreditsError,
    CaptainDataError,
)
from airflow_provider_captaindata.params import check_flag, whole_number
from airflow_provider_captaindata.results import DEFAULT_MAX_XCOM_BYTES

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.v1 import V1Client
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

# The credit check runs by default when a task may cost more than this many credits.
DEFAULT_CREDIT_CHECK_THRESHOLD = 100.0
# (uncertain) for the estimate only: one credit a result (and per enrichment, two with
# full_enrich), one a list page. What was really spent is read from /quotas.
ESTIMATED_CREDITS_PER_RESULT = 1.0
ESTIMATED_RESULTS_PER_PAGE = 25


class CaptainDataV1OperatorBase(BaseOperator):
    """Base of the v1 operators (people and companies, real time).

    :param captaindata_conn_id: Airflow connection of type ``captaindata`` holding a v1 key;
        its ``rate_limit_per_second`` is the plan's rate, shared by every v1 call of the worker.
    :param output_path: object-storage path or URI (``file:///...``, ``s3://...``) of a JSON
        Lines file to stream the records to; XCom then gets only a summary
        ``{path, rows, failed, credits_spent, ...}``.
    :param max_xcom_bytes: without ``output_path``, the most JSON that may go to XCom; more
        fails the task with a hint to set ``output_path``.
    :param credit_check: refuse to start when the estimated cost exceeds ``credits_left``
        (``GET /quotas``). None (default): only when the estimate is over
        ``credit_check_threshold``; True: always; False: never.
    :param credit_check_threshold: the estimate above which the default credit check runs.
    """

    api_version: ClassVar[str] = "v1"
    endpoint: ClassVar[str]
    ui_color = "#eaf7ee"
    landed: dict[str, Any] | None = None  # what the results were (assets.record_landed), for lineage
    run_uid: str | None = None  # v1 has no runs (assets.RunTask)

    def __init__(
        self,
        *,
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        output_path: str | None = None,
        max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES,
        credit_check: bool | None = None,
        credit_check_threshold: float = DEFAULT_CREDIT_CHECK_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if credit_check is not None:
            check_flag("credit_check", credit_check)
        if isinstance(credit_check_threshold, bool) or not isinstance(credit_check_threshold, int | float):
            raise CaptainDataConfigError(
                f"credit_check_threshold must be a number of credits, got {credit_check_threshold!r}"
            )
        whole_number("max_xcom_bytes", max_xcom_bytes, minimum=1)
        self.captaindata_conn_id = captaindata_conn_id
        self.output_path = output_path
        self.max_xcom_bytes = max_xcom_bytes
        self.credit_check = credit_check
        self.credit_check_threshold = float(credit_check_threshold)

    @cached_property
    def hook(self) -> CaptainDataHook:
        from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

        return CaptainDataHook(self.captaindata_conn_id)

    # -- credits ----------------------------------------------------------------------------

    def credits_before(self, client: V1Client, estimate: float) -> dict[str, Any] | None:
        """``GET /quotas`` before the work; refuses to start (without task retries) when the
        credit check applies and ``estimate`` exceeds ``credits_left``."""
        check = self.credit_check if self.credit_check is not None else estimate > self.credit_check_threshold
        try:
            quotas = client.quotas()
        except CaptainDataError as exc:
            if check:
                raise
            self.log.warning(
                "Credits not read before the work (GET /quotas: %s): the amount spent is unknown", exc
            )
            return None
        left = float(quotas.get("credits_left") or 0)
        self.log.info("Credits left: %s (estimated cost of this task: %s)", left, round(estimate, 2))
        if check and estimate > left:
            raise AirflowFailException(
                str(
                    CaptainDataCreditsError(
                        f"{self.task_id}: the estimated cost ({round(estimate, 2)} credits) exceeds the "
                        f"{left} credits left: nothing was sent. Lower the inputs or max_results, add "
                        "credits, or set credit_check=False."
                    )
                )
            )
        return quotas

    def credits_spent(self, client: V1Client, before: dict[str, Any] | None) -> float | None:
        if before is None:
            return None
        try:
            after = client.quotas()
        except CaptainDataError as exc:
            self.log.warning("Credits not read after the work (GET /quotas: %s)", exc)
            return None
        spent = round(float(before.get("credits_left") or 0) - float(after.get("credits_left") or 0), 3)
        self.log.info("Credits spent: %s (%s left)", spent, after.get("credits_left"))
        return spent

    # -- results ----------------------------------------------------------------------------

    def land(self, context: Any, result: Any) -> Any:
        from airflow_provider_captaindata.assets import record_landed  # not needed to parse a DAG

        return record_landed(self, context, result)

    def push(self, context: Any, key: str, value: Any) -> None:
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=key, value=value)

    # OpenLineage (the ``openlineage`` extra): see lineage.py, imported only when called.
    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_provider_captaindata.lineage import operator_lineage

        return operator_lineage(self, "start")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_provider_captaindata.lineage import operator_lineage

        return operator_lineage(self, "complete")
