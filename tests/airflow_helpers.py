"""Running real DAGs in tests, the same way on Airflow 2.11 and 3.x."""

from __future__ import annotations

import os
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

AIRFLOW_VERSION_INFO = tuple(int(p) for p in AIRFLOW_VERSION.split(".")[:2])
AIRFLOW_3 = AIRFLOW_VERSION_INFO >= (3, 0)
AIRFLOW_3_3 = AIRFLOW_VERSION_INFO >= (3, 3)


def run_dag(dag: Any, run_conf: dict[str, Any] | None = None, **test_kwargs: Any) -> Any:
    """``dag.test()`` with deferrals run inline; returns the DagRun.

    Airflow 3.1+ only runs serialized DAGs, so the DAG is registered in the database first
    (internal API, kept in this one place: ``airflow.dag_processing.dagbag`` from 3.2,
    ``airflow.models.dagbag`` on 3.1); 3.0's ``dag.test()`` serializes the DAG itself.
    """
    if AIRFLOW_VERSION_INFO >= (3, 1):
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        if AIRFLOW_VERSION_INFO >= (3, 2):
            from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
        else:
            from airflow.models.dagbag import DagBag, sync_bag_to_db  # type: ignore[no-redef]

        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=os.devnull)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
    if AIRFLOW_3:
        activate_outlet_assets(dag)
    return dag.test(run_conf=run_conf, **test_kwargs) if run_conf else dag.test(**test_kwargs)


def rerun_cleared(dag: Any, dag_run: Any) -> Any:
    """A user's Clear of the finished ``dag_run`` (Airflow's own ``clear_task_instances``, the
    DAG run back to queued, as the UI's Clear does), then the scheduler's part: the same DAG
    run starts again and ``dag.test()`` runs it, its tries going on from where they were.
    ``dag`` is the DAG as it is now (a clear after the inputs changed runs the new ones).
    Returns the DagRun."""
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        tis = _dag_run(session, dag_run).get_task_instances(session=session)
        tries = max(ti.try_number for ti in tis)
        clear_task_instances(tis, session, dag_run_state=DagRunState.QUEUED)
    cleared = run_again(dag, dag_run)
    assert max(ti.try_number for ti in cleared.get_task_instances()) > tries, "the clear ran no task again"
    return cleared


def run_again(dag: Any, dag_run: Any) -> Any:
    """``dag.test()`` on ``dag_run`` as it is (queued after a clear, or running when a task's
    worker died), started as the scheduler starts a run, instead of a new DAG run."""
    import datetime
    from unittest import mock

    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    def started(*, dag: Any, session: Any, **_: Any) -> Any:
        run = _dag_run(session, dag_run)
        run.dag = dag
        if run.state != DagRunState.RUNNING:
            run.state = DagRunState.RUNNING
            run.start_date = datetime.datetime.now(datetime.UTC)
        session.commit()
        return run

    target = (
        "airflow.models.dagrun.get_or_create_dagrun"
        if AIRFLOW_VERSION_INFO >= (3, 1)
        else "airflow.models.dag._get_or_create_dagrun"
    )
    # dag.test() first clears the task instances of the logical date it is given, then makes a
    # DAG run for it: given a date no run has, its clear touches nothing, and the run is this one.
    elsewhere = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    with mock.patch(target, started):
        run_dag(dag, **({"logical_date": elsewhere} if AIRFLOW_3 else {"execution_date": elsewhere}))
    with create_session() as session:
        run = _dag_run(session, dag_run)
        session.expunge(run)
        return run


def latest_dag_run(dag_id: str) -> Any:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id).order_by(DagRun.id.desc()).first()
        session.expunge(run)
        return run


def _dag_run(session: Any, dag_run: Any) -> Any:
    from airflow.models.dagrun import DagRun

    return session.query(DagRun).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).one()


def activate_outlet_assets(dag: Any) -> None:
    """Mark the assets of the DAG's outlets active, as the scheduler does once the DAG is
    parsed: without it Airflow 3.0 fails a task whose outlet is not active."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.sdk import Asset
    from airflow.utils.session import create_session

    outlets = {(o.name, o.uri): o for t in dag.tasks for o in t.outlets if isinstance(o, Asset)}
    with create_session() as session:
        for outlet in outlets.values():
            model = session.query(AssetModel).filter_by(name=outlet.name, uri=outlet.uri).one_or_none()
            if model is None:
                model = AssetModel(name=outlet.name, uri=outlet.uri, group=outlet.group, extra=outlet.extra)
                session.add(model)
            if not session.query(AssetActive).filter_by(name=outlet.name, uri=outlet.uri).count():
                session.add(AssetActive.for_asset(model))


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    ti = next(t for t in dag_run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def make_dag(dag_id: str, **kwargs: Any) -> Any:
    """A DAG with no schedule, from the SDK on Airflow 3 and from airflow on 2.11."""
    import datetime

    if AIRFLOW_3:
        from airflow.sdk import DAG
    else:
        from airflow import DAG
    return DAG(dag_id, schedule=None, start_date=datetime.datetime(2025, 1, 1), catchup=False, **kwargs)


def python_task(task_id: str, fn: Any, **kwargs: Any) -> Any:
    if AIRFLOW_3:
        from airflow.providers.standard.operators.python import PythonOperator
    else:
        from airflow.operators.python import PythonOperator
    return PythonOperator(task_id=task_id, python_callable=fn, **kwargs)


def task_output(caplog: Any, capsys: Any) -> str:
    """Everything a task logged: Airflow 3 task logs go to stdout (structlog), 2.11's to logging."""
    captured = capsys.readouterr()
    return caplog.text + captured.out + captured.err


def current_context(context: dict[str, Any]) -> Any:
    """Airflow's own "current task context" (what ``get_current_context()`` returns), as the
    task runner sets it around ``execute`` and ``on_kill``."""
    if AIRFLOW_3:
        from airflow.sdk.execution_time.context import set_current_context
    else:
        from airflow.models.taskinstance import set_current_context
    return set_current_context(context)  # type: ignore[arg-type]
