"""A retry resumes only its own launch: same task instance, same deployment, same inputs.

Unit style against the emulator, as in ``test_launch_guarantees``: each "try" is a fresh
operator calling ``execute``, with the same ``task_state_store`` (Airflow 3.3+) or none (the
run is then found by its name or launch key, among the runs created since the DAG run began).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_captaindata import launch_identity
from airflow_provider_captaindata.emulator.samples import sample_input
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.launch_identity import MAX_JOB_NAME, LaunchIdentity
from tests.test_launch_guarantees import (
    EXTRACT,
    PROFILES,
    V3_LAUNCH,
    V4_LAUNCH,
    StateStore,
    TaskInstance,
    new_context,
    v3_operator,
    v4_operator,
    with_hook,
)

OTHER_PROFILES = [{"linkedin_profile_url": "https://www.linkedin.com/in/someone-else"}]
STORES = pytest.mark.parametrize("with_store", [True, False], ids=["task_state_store", "lookup"])


@pytest.fixture
def hook(captaindata_emulator: Any) -> CaptainDataHook:
    captaindata_emulator.configure(v3_pending_seconds=0.05, v3_running_seconds=0.2, v3_rows_per_input=1)
    return CaptainDataHook()


@pytest.fixture
def workflows(hook: CaptainDataHook) -> list[str]:
    return [w.uid for w in hook.list_workflows() if len(w.steps) == 1]


def field_of(hook: CaptainDataHook, workflow_uid: str) -> str:
    """The input field of a one-step workflow, from its input_schema."""
    return next(iter(hook.get_workflow_details(workflow_uid).steps[0].input_schema["properties"]))


def context_of(store: StateStore | None, started: float | None = None) -> dict[str, Any]:
    """A try's context, with the DAG run's start as Airflow gives it."""
    context = new_context(store)
    if started is not None:
        context["dag_run"] = SimpleNamespace(start_date=datetime.fromtimestamp(started, UTC))
    return context


def identity(dag_id: str, task_id: str, run_id: str = "manual__1", map_index: int = -1) -> LaunchIdentity:
    return LaunchIdentity(dag_id, task_id, run_id, map_index, "prod", "f" * 64)


# -- the identity: unambiguous, readable, bounded ------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("a__b", "c"), ("a", "b__c")),
        (("a|b", "c"), ("a", "b|c")),
        (("a", "b", "r|1"), ("a|b", "r", "1")),
        (("a", "b", "r", 1), ("a", "b", "r", -1)),
    ],
)
def test_names_and_keys_never_collide(one: tuple[Any, ...], other: tuple[Any, ...]) -> None:
    first, second = identity(*one), identity(*other)
    assert first.job_name() != second.job_name()
    assert first.launch_key != second.launch_key


def test_the_name_is_readable_and_bounded() -> None:
    name = identity("sales_dag", "extract.people", "manual__2026-01-01T00:00:00+00:00", 3).job_name()
    assert name.startswith("airflow|sales_dag|extract.people|manual__2026-01-01T00:00:00+00:00|3|prod|#")
    long = identity("d" * 250, "t" * 250, "r" * 250)
    assert len(long.job_name()) == MAX_JOB_NAME and long.job_name().endswith(f"#{long.digest[:16]}")
    assert identity("d" * 250, "t" * 250, "r" * 249 + "s").job_name() != long.job_name()
    assert identity("d", "t").job_name("Weekly leads") == f"Weekly leads #{identity('d', 't').digest[:16]}"


# -- a changed launch is a new launch ------------------------------------------------------------


@STORES
def test_v3_a_clear_with_new_inputs_launches_a_new_run(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str], with_store: bool
) -> None:
    store = StateStore() if with_store else None
    first = v3_operator(workflows[0]).execute(new_context(store))
    assert len(first) == len(PROFILES)
    # Cleared with other inputs: the finished run of the old inputs is not this launch.
    rows = v3_operator(workflows[0], inputs=OTHER_PROFILES).execute(new_context(store))
    assert [r["linkedin_profile_url"] for r in rows] == [OTHER_PROFILES[0]["linkedin_profile_url"]]
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 2
    # And the same launch again is resumed, not launched.
    assert v3_operator(workflows[0], inputs=OTHER_PROFILES).execute(new_context(store)) == rows
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 2


def test_v3_a_changed_workflow_is_a_new_launch(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str]
) -> None:
    store = StateStore()
    run_a, run_b = (
        # Each workflow gets inputs its input_schema accepts (checked before any launch).
        v3_operator(uid, wait_for_completion=False, inputs=[sample_input([field_of(hook, uid)])]).execute(
            new_context(store)
        )
        for uid in workflows[:2]
    )
    assert run_b != run_a and hook.get_workflow_run(run_b).workflow_uid == workflows[1]


@STORES
def test_v4_a_clear_with_new_parameters_launches_a_new_run(
    captaindata_emulator: Any, hook: CaptainDataHook, with_store: bool
) -> None:
    store = StateStore() if with_store else None
    captaindata_emulator.configure(v4_running_seconds=60)
    run_a = v4_operator(wait_for_completion=False).execute(new_context(store))
    run_b = v4_operator(wait_for_completion=False, parameters={"skills": True}).execute(new_context(store))
    assert run_b != run_a
    assert (
        v4_operator(wait_for_completion=False, parameters={"skills": True}).execute(new_context(store))
        == run_b
    )
    assert len(captaindata_emulator.requests(method="POST", path=V4_LAUNCH)) == 2


# -- two deployments sharing a workspace --------------------------------------------------------


def connection_with(
    captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: str
) -> None:
    conn = captaindata_emulator.connection_json()
    conn["extra"] = {**conn["extra"], **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_deployments_sharing_a_workspace_never_resume_each_others_runs(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    captaindata_emulator.configure(v3_running_seconds=60)
    connection_with(captaindata_emulator, monkeypatch, "cd_prod", deployment="prod")
    connection_with(captaindata_emulator, monkeypatch, "cd_staging", deployment="staging")

    def launch_from(conn_id: str) -> str:
        op = v3_operator(workflows[0], wait_for_completion=False, captaindata_conn_id=conn_id)
        op.__dict__["hook"] = CaptainDataHook(conn_id)
        return op.execute(new_context(None))  # same dag, task and run id in both deployments

    prod, staging = launch_from("cd_prod"), launch_from("cd_staging")
    assert staging != prod
    assert launch_from("cd_prod") == prod  # each still resumes its own
    assert {hook.get_workflow_run(r).name.split("|")[5] for r in (prod, staging)} == {"prod", "staging"}


def test_the_default_deployment_is_the_host_airflow_is_served_at(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.airflow_helpers import AIRFLOW_3

    option = "AIRFLOW__API__BASE_URL" if AIRFLOW_3 else "AIRFLOW__WEBSERVER__BASE_URL"
    monkeypatch.setenv(option, "https://user:pw@airflow.prod.example.com:8443/home")
    assert launch_identity.airflow_deployment() == "airflow.prod.example.com:8443"


# -- the lookup: complete since the first try, bounded by time -----------------------------------


SIBLINGS = 520  # more than the 500 newest runs the lookup used to read


@STORES
def test_v3_lookup_finds_the_run_behind_many_newer_siblings(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str], with_store: bool
) -> None:
    captaindata_emulator.configure(v3_running_seconds=120)
    store, started = (StateStore() if with_store else None), time.time()
    run_a = v3_operator(workflows[0], wait_for_completion=False).execute(context_of(store, started))
    if store is not None:
        store.delete("captaindata_run_uid")  # the store lost it: only the lookup can find it
    step = [{"step_uid": hook.get_workflow_details(workflows[0]).steps[0].step_uid}]
    for n in range(SIBLINGS):  # mapped siblings, launched after try 1
        hook.launch_workflow(workflows[0], job_name=f"sibling {n}", inputs=PROFILES[:1], steps=step)
    assert v3_operator(workflows[0], wait_for_completion=False).execute(context_of(store, started)) == run_a
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 1 + SIBLINGS


def test_v4_lookup_finds_the_run_behind_many_newer_siblings(
    captaindata_emulator: Any, hook: CaptainDataHook
) -> None:
    captaindata_emulator.configure(v4_running_seconds=120, v4_queued_seconds=60)
    started = time.time()
    run_a = v4_operator(wait_for_completion=False).execute(context_of(None, started))
    for _ in range(SIBLINGS):
        hook.run_action_async(EXTRACT, PROFILES[:1], callback_url="http://127.0.0.1:9/sibling")
    assert v4_operator(wait_for_completion=False).execute(context_of(None, started)) == run_a
    assert len(captaindata_emulator.requests(method="POST", path=V4_LAUNCH)) == 1 + SIBLINGS


def test_the_lookup_stops_at_runs_older_than_the_first_try(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch_identity, "LOOKUP_CLOCK_MARGIN", 0.5)
    step = [{"step_uid": hook.get_workflow_details(workflows[0]).steps[0].step_uid}]
    for n in range(150):  # three pages of runs from before this DAG run
        hook.launch_workflow(workflows[0], job_name=f"old {n}", inputs=PROFILES[:1], steps=step)
    time.sleep(1.0)
    captaindata_emulator.clear_requests()
    store = StateStore()
    v3_operator(workflows[0], wait_for_completion=False).execute(context_of(store, time.time()))
    assert len(captaindata_emulator.requests(method="GET", path="/v3/workflows/*/jobs")) == 1
    assert isinstance(json.loads(store.data[launch_identity.FIRST_TRY_KEY]), float)


def test_a_cleared_dag_run_still_finds_the_run_of_the_tries_before_the_clear(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before 3.3 (no state store) the lookup reads back to the DAG run's start; a clear of the
    finished DAG run starts it again, after the run the first try launched."""
    monkeypatch.setattr(launch_identity, "LOOKUP_CLOCK_MARGIN", 0.5)
    captaindata_emulator.configure(v3_running_seconds=600)
    due = time.time()
    run_a = v3_operator(workflows[0], wait_for_completion=False).execute(context_of(None, due))
    step = [{"step_uid": hook.get_workflow_details(workflows[0]).steps[0].step_uid}]
    for n in range(60):  # more than a page of runs launched by others before the clear
        hook.launch_workflow(workflows[0], job_name=f"other {n}", inputs=PROFILES[:1], steps=step)
    time.sleep(1.0)
    context = context_of(None, time.time())  # the clear: the DAG run starts again, try 2
    context["ti"].try_number = 2
    context["dag_run"].run_after = datetime.fromtimestamp(due, UTC)
    assert v3_operator(workflows[0], wait_for_completion=False).execute(context) == run_a
    assert len(captaindata_emulator.requests(method="POST", path=V3_LAUNCH)) == 61


def test_a_listing_that_ignores_the_page_fails_the_lookup(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str]
) -> None:
    from airflow_provider_captaindata.exceptions import CaptainDataPagingError

    job = {"uid": "j1", "name": "other", "status": "running", "scheduled_time": None}
    captaindata_emulator.add_fault("GET", f"/v3/workflows/{workflows[0]}/jobs", body=[job], times=None)
    with pytest.raises(CaptainDataPagingError, match="page 2 repeats a page already read"):
        hook.find_workflow_run(workflows[0], "mine", since=time.time() - 60)


def test_each_mapped_instance_is_its_own_launch(captaindata_emulator: Any, workflows: list[str]) -> None:
    captaindata_emulator.configure(v3_running_seconds=60)

    class Mapped(TaskInstance):
        map_index = 1

    context = new_context(None)
    context["ti"] = Mapped()
    run_0 = v3_operator(workflows[0], wait_for_completion=False).execute(new_context(None))
    run_1 = with_hook(v3_operator(workflows[0], wait_for_completion=False)).execute(context)
    assert run_0 != run_1


def test_a_repeating_run_is_deleted_by_its_name(
    captaindata_emulator: Any, hook: CaptainDataHook, workflows: list[str]
) -> None:
    op = v3_operator(workflows[0], wait_for_completion=False, repeat_option={"type": "day", "value": 1})
    name = hook.get_workflow_run(op.execute(new_context(None))).name
    assert name and "|" in name and "#" in name
    assert "deleted_at" in hook.delete_workflow_schedule(name)
