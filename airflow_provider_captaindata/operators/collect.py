"""``CaptainDataCollectRunOperator``: the results of runs this provider did not launch, e.g. the
runs whose ``CaptainDataRunFinishedTrigger`` events started the DAG run."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID
from airflow_provider_captaindata.results import (
    DEFAULT_MAX_XCOM_BYTES,
    aborted_on_error,
    instance_output_path,
    open_sink,
)


def runs_from_asset_events(context: Any) -> list[dict[str, Any]]:
    """The Captain Data run events that triggered this DAG run, oldest first, each run once.

    Each is the trigger's payload: ``{run_uid, api_version, status, state, workflow_uid |
    action, run_name, finished_at, message, source}``. Several runs may finish before the
    scheduler creates the DAG run: they all trigger the same one.
    """
    events: Any = context.get("triggering_asset_events") or {}
    found: dict[str, dict[str, Any]] = {}
    for asset_events in events.values():
        for event in asset_events:
            payload = (getattr(event, "extra", None) or {}).get("payload")
            if isinstance(payload, dict) and isinstance(payload.get("run_uid"), str):
                found.setdefault(payload["run_uid"], payload)
    return sorted(found.values(), key=lambda p: str(p.get("finished_at") or ""))


class CaptainDataCollectRunOperator(BaseOperator):
    """Read the results of finished v3 runs into XCom or a JSON Lines file.

    :param run_uid: the run to collect (templated); None: every run whose event triggered
        this DAG run (see :func:`runs_from_asset_events`).
    :param output_path: a JSON Lines file (any ObjectStoragePath URI, templated) for the rows
        of all the runs; XCom then gets ``{path, rows, run_uids}``. None: the rows go to XCom.
        A mapped instance writes ``.map-{map_index}`` before the last suffix.
    :param captaindata_conn_id: the Captain Data connection.
    :param max_xcom_bytes: more rows than this in XCom fail the task (use ``output_path``).

    v4 runs have no results endpoint: their results were POSTed to the run's callback URL, so
    a v4 event fails this task with a message saying so.
    """

    template_fields = ("run_uid", "output_path")

    def __init__(
        self,
        *,
        run_uid: str | None = None,
        output_path: str | None = None,
        captaindata_conn_id: str = DEFAULT_CONN_ID,
        max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_uid = run_uid
        self.output_path = output_path
        self.captaindata_conn_id = captaindata_conn_id
        self.max_xcom_bytes = max_xcom_bytes

    def run_uids(self, context: Any) -> list[str]:
        if self.run_uid:
            return [self.run_uid]
        runs = runs_from_asset_events(context)
        if not runs:
            raise AirflowFailException(
                "No run_uid given and no Captain Data run event triggered this DAG run: schedule the DAG "
                "on an asset watched by CaptainDataRunFinishedTrigger, or pass run_uid."
            )
        v4 = [r["run_uid"] for r in runs if r.get("api_version") != "v3"]
        if v4:
            raise AirflowFailException(
                f"Runs {', '.join(v4)} are v4 runs: v4 has no results endpoint, their results were POSTed "
                "to the callback URL of the schedule or launch that started them."
            )
        return [r["run_uid"] for r in runs]

    def execute(self, context: Any) -> Any:
        from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

        uids = self.run_uids(context)
        # A mapped instance writes its own object (see results.instance_output_path).
        self.output_path = instance_output_path(
            self.output_path, getattr(context.get("ti"), "map_index", None)
        )
        hook = CaptainDataHook(self.captaindata_conn_id)
        with aborted_on_error(open_sink(self.output_path, max_xcom_bytes=self.max_xcom_bytes)) as sink:
            for uid in uids:
                for page in hook.iter_workflow_results(uid):
                    sink.add_page(page)
                self.log.info("Run %s collected: %s rows so far", uid, sink.rows)
            return sink.finish(run_uids=uids)
