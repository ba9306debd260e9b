"""Clears, reruns and retries of an acting fan-out that must not send a message again (from an
independent review of the harness's clears; each test failed before its fix)."""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.operators.fanout import INPUT_TAG
from tests.airflow_helpers import AIRFLOW_3, AIRFLOW_3_3, make_dag, rerun_cleared, run_dag
from tests.invariants.acting import (
    LIVE_PATH,
    MESSAGE,
    FailsAfterExecute,
    acted_on,
    acting_dag,
    message_groups,
)
from tests.invariants.harness import harness_policy, later, run_dag_through_kills, worker_dies
from tests.invariants.scenarios import Scenario

pytestmark = pytest.mark.usefixtures("airflow_db")
_ids = iter(range(10_000))


def acted(emulator: Any) -> Counter[str]:
    return acted_on(emulator.requests("POST", LIVE_PATH))


@pytest.mark.parametrize("output", ["xcom", "file"])
def test_a_clear_with_the_inputs_reordered_sends_none_again(captaindata_emulator: Any, output: str) -> None:
    """The upstream list came back in another order (a set, a query without ORDER BY): records
    were found by index, so every moved input was sent again."""
    scenario = Scenario(seed=-1, kind="acting", inputs=3, output=output)
    groups, folder = message_groups(scenario), Path(tempfile.mkdtemp(prefix="clears-"))
    dag_id = f"clears_order_{next(_ids)}"
    with harness_policy():
        dag_run = run_dag(acting_dag(scenario, folder, dag_id, groups))
        rerun_cleared(acting_dag(scenario, folder, dag_id, [list(reversed(groups[0]))]), dag_run)
    counts = acted(captaindata_emulator)
    assert sum(counts.values()) == 3 and max(counts.values()) == 1, dict(counts)


@pytest.mark.skipif(AIRFLOW_3_3, reason="before 3.3 the records live beside output_path")
def test_an_output_path_rendered_per_try_sends_none_again(captaindata_emulator: Any) -> None:
    """Each try's records were looked for beside its own file, so a retry found none and sent
    every input again; a retry that finds no earlier try's claim now asks the API instead."""
    scenario = Scenario(seed=-1, kind="acting", inputs=3, output="file", retries=1, fail_after_execute=True)
    folder = Path(tempfile.mkdtemp(prefix="clears-"))
    dag = acting_dag(scenario, folder, f"clears_per_try_{next(_ids)}", message_groups(scenario))
    dag.task_dict["message"].output_path = str(folder / "messages-{{ ti.try_number }}.jsonl")
    with harness_policy():
        run_dag(dag)
    assert max(acted(captaindata_emulator).values()) == 1


@pytest.mark.skipif(AIRFLOW_3, reason="Airflow 2.11's backfill over an existing DAG run")
def test_a_backfill_rerunning_a_failed_fanout_hours_later_sends_none_again(captaindata_emulator: Any) -> None:
    """``airflow dags backfill --rerun-failed-tasks`` restarts the DAG run without a clear (its
    clear_number stays 0): the lookup read back to the backfill's start only."""
    from airflow.executors.debug_executor import DebugExecutor
    from airflow.executors.executor_loader import ExecutorLoader

    scenario = Scenario(seed=-1, kind="acting", inputs=3, output="xcom", kill=2, kill_after=True)
    folder = Path(tempfile.mkdtemp(prefix="clears-"))
    dag = acting_dag(scenario, folder, f"clears_backfill_{next(_ids)}", message_groups(scenario))
    with harness_policy():
        with worker_dies(scenario.kill, scenario.kill_after) as kill:
            dag_run = run_dag_through_kills(dag)
        assert kill.fired and sum(acted(captaindata_emulator).values()) >= 1
        with later(3 * 3600):
            ExecutorLoader.set_default_executor(DebugExecutor())
            with contextlib.suppress(Exception):  # the backfill raises when a task fails
                date = dag_run.execution_date
                dag.run(
                    start_date=date,
                    end_date=date,
                    donot_pickle=True,
                    rerun_failed_tasks=True,
                    run_at_least_once=True,
                )
            counts = acted(captaindata_emulator)
    assert max(counts.values()) == 1, dict(counts)


@pytest.mark.parametrize("output", ["xcom", "file"])
def test_a_clear_with_an_upstream_fanouts_rows_reordered_sends_none_again(
    captaindata_emulator: Any, output: str
) -> None:
    """An upstream fan-out's rows carry their place (custom_data.airflow_input_index), which
    this fan-out replaces by the input's own index when sending: it was in the record key, so
    every moved input was sent again."""
    scenario = Scenario(seed=-1, kind="acting", inputs=3, output=output)
    (people,) = message_groups(scenario)
    folder, dag_id = Path(tempfile.mkdtemp(prefix="clears-")), f"clears_chain_{next(_ids)}"

    def rows(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        return [[{**item, "custom_data": {INPUT_TAG: i}} for i, item in enumerate(items)]]

    with harness_policy():
        dag_run = run_dag(acting_dag(scenario, folder, dag_id, rows(people)))
        rerun_cleared(acting_dag(scenario, folder, dag_id, rows(list(reversed(people)))), dag_run)
    counts = acted(captaindata_emulator)
    assert sum(counts.values()) == 3 and max(counts.values()) == 1, dict(counts)


@pytest.mark.skipif(AIRFLOW_3_3, reason="before 3.3 the records live beside output_path")
def test_a_single_input_with_an_output_path_rendered_per_try_is_sent_once(captaindata_emulator: Any) -> None:
    """The single ``input`` read its records beside each try's own file too, without asking the
    API when it found no earlier try's claim there."""
    folder = Path(tempfile.mkdtemp(prefix="clears-"))
    (person,) = message_groups(Scenario(seed=-1, kind="acting", inputs=1))[0]
    with make_dag(f"clears_single_{next(_ids)}") as dag:
        FailsAfterExecute(
            task_id="message",
            action=MESSAGE,
            input=person,
            retries=1,
            retry_delay=timedelta(0),
            output_path=str(folder / "messages-{{ ti.try_number }}.jsonl"),
        )
    with harness_policy():
        run_dag(dag)
    assert max(acted(captaindata_emulator).values()) == 1
