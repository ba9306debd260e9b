"""A run is launched once (docs/guarantees.md invariant 2), attacked as an independent review did:
launch faults, lookup faults, clock skew, earlier failed runs of the same launch listed above
the live one (Captain Data's clocks order the list), BLOCKED runs, retries and worker deaths.

Everything runs over loopback HTTP against the emulator; launches are counted from the
emulator's own request log (``api_status`` 2xx on the launch POST: the API created a run,
whatever answer the client saw).

``LAUNCH_FUZZ_SCENARIOS`` (default 25) scenarios of the hook-level draw and
``LAUNCH_FUZZ_DAG_SCENARIOS`` (default 3) of the dag.test() draw run from ``LAUNCH_FUZZ_SEED``
(default 0).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import CaptainDataError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.invariants.scenarios import FAULTS as HARNESS_FAULTS

POLICY = RetryPolicy(
    attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=0.5, launch_lookup_delay=0
)
EXTRACT = "linkedin-extract-people"
V3_LAUNCH = "/v3/workflows/*/schedule"
V4_LAUNCH = f"/v4/actions/{EXTRACT}/run/async"
PROFILE = {"linkedin_profile_url": "https://www.linkedin.com/in/person-00000"}

# The harness's fault kinds (one table of what each forces), those a launch call is drawn from.
FAULTS = {
    kind: HARNESS_FAULTS[kind]
    for kind in (
        "429",
        "500",
        "503",
        "520",
        "500-after",
        "502-after",
        "524-after",
        "timeout-after",
        "drop-before",
        "drop-after",
        "truncated-after",
    )
}
# A v4 async launch task as the DAG tests build it: polled on the worker, retried at once.
ASYNC_TASK = {
    "action": EXTRACT,
    "mode": "async",
    "callback_url": "http://127.0.0.1:9/cb",
    "poll_interval": 0.05,
    "deferrable": False,
    "retry_delay": timedelta(0),
}
LOOKUP_FAULTS = ["503", "500", "timeout-after", "drop-before", "truncated-after"]
SEED = int(os.environ.get("LAUNCH_FUZZ_SEED", "0"))
SCENARIOS = int(os.environ.get("LAUNCH_FUZZ_SCENARIOS", "25"))
DAG_SCENARIOS = int(os.environ.get("LAUNCH_FUZZ_DAG_SCENARIOS", "3"))


def acted(emulator: Any, path: str) -> list[dict[str, Any]]:
    """The launch POSTs the API itself served with a 2xx: each made a run."""
    return [r for r in emulator.requests(method="POST", path=path) if 200 <= (r.get("api_status") or 0) < 300]


@dataclass
class HookScenario:
    seed: int
    version: str
    skew: float
    launch_faults: list[str] = field(default_factory=list)
    lookup_faults: list[str] = field(default_factory=list)
    stale: int = 0  # earlier failed runs with the same name or tag
    siblings: int = 0  # other runs of the workflow or action created before


def draw_hook(seed: int) -> HookScenario:
    rng = random.Random(seed)
    skew = rng.choice([-600.0, 600.0, -599.0, 0.0, rng.uniform(-600, 600)])
    scenario = HookScenario(seed=seed, version=rng.choice(["v3", "v4"]), skew=skew)
    scenario.launch_faults = [rng.choice(list(FAULTS)) for _ in range(rng.randint(0, 3))]
    scenario.lookup_faults = [rng.choice(LOOKUP_FAULTS) for _ in range(rng.choice([0, 0, 1, 2]))]
    scenario.stale = rng.choice([0, 0, 1, 2])
    scenario.siblings = rng.choice([0, 0, 3, 120])
    return scenario


def run_hook_scenario(emulator: Any, s: HookScenario) -> None:
    emulator.reset()
    emulator.configure(
        clock_skew_seconds=s.skew, v3_pending_seconds=0.05, v3_running_seconds=30, v4_running_seconds=30
    )
    hook = CaptainDataHook(retry_policy=POLICY)  # the call under test: short timeouts, faults
    # Setting up and checking with the default policy: on a loaded machine a fault-free answer
    # can take longer than POLICY's 0.5 s read timeout, which is only for the call under test.
    setup = CaptainDataHook()
    tag = f"reviewtag{s.seed:06d}"
    name = f"review #{tag}"
    stale: list[str] = []
    if s.version == "v3":
        workflow = next(w.uid for w in setup.list_workflows() if len(w.steps) == 1)
        steps = [{"step_uid": setup.get_workflow_details(workflow).steps[0].step_uid}]
        for i in range(s.siblings):
            setup.launch_workflow(workflow, job_name=f"sibling {i}", inputs=[PROFILE], steps=steps)
        for _ in range(s.stale):
            emulator.force_outcome(workflow, "shutdown", error_message="stale")
            stale.append(
                setup.launch_workflow(workflow, job_name=name, inputs=[PROFILE], steps=steps).job_uid
            )
        launch_path, list_path = V3_LAUNCH, f"/v3/workflows/{workflow}/jobs"
        emulator.clear_requests()
    else:
        url = "http://127.0.0.1:9/cb?airflow_launch={}"
        for i in range(s.siblings):
            setup.run_action_async(EXTRACT, [PROFILE], callback_url=url.format(f"sibling{i}"))
        for _ in range(s.stale):
            emulator.force_outcome(EXTRACT, "FAILED", error_message="stale")
            stale.append(setup.run_action_async(EXTRACT, [PROFILE], callback_url=url.format(tag)).uid)
        launch_path, list_path = V4_LAUNCH, "/v4/runs"
        emulator.clear_requests()
    for kind in s.launch_faults:
        emulator.add_fault("POST", launch_path, **FAULTS[kind])
    for kind in s.lookup_faults:
        emulator.add_fault("GET", list_path, **FAULTS[kind])
    returned: str | None = None
    error: Exception | None = None
    try:
        if s.version == "v3":
            returned = hook.launch_workflow_once(
                workflow, job_name=name, stale_run_uids=stale, inputs=[PROFILE], steps=steps
            )
        else:
            returned = hook.run_action_async_once(
                EXTRACT, [PROFILE], callback_url=url.format(tag), launch_tag=tag, stale_run_uids=stale
            )
    except CaptainDataError as exc:
        error = exc
    made = acted(emulator, launch_path)
    if s.version == "v3":
        ours = [r.uid for r in setup.list_workflow_runs(workflow) if r.name == name and r.uid not in stale]
    else:
        runs = [r for o in (0, 100, 200) for r in setup.list_action_runs(action_name=EXTRACT, offset=o)]
        ours = [r.uid for r in runs if tag in str((r.callback or {}).get("url")) and r.uid not in stale]
    detail = f"{s} -> returned {returned}, error {error!r}, acted {len(made)}, ours {ours}"
    assert len(made) <= 1 and len(ours) <= 1, "launched twice: " + detail
    if returned is not None:
        assert ours == [returned], "returned a run that is not this launch's: " + detail


def test_hook_launch_once_fuzz(captaindata_emulator: Any) -> None:
    for seed in range(SEED, SEED + SCENARIOS):
        run_hook_scenario(captaindata_emulator, draw_hook(seed))


# -- the real operators under dag.test() -------------------------------------------------------

FAILED_STATUSES = {"shutdown", "warning", "stopped", "FAILED", "INVALID", "BLOCKED", "STOPPED"}


@dataclass
class DagScenario:
    seed: int
    version: str
    mapped: bool
    retries: int
    skew: float
    failure: str  # none, after-execute, after-launch, run-fails
    launch_faults: list[str] = field(default_factory=list)
    lookup_faults: list[str] = field(default_factory=list)


def draw_dag(seed: int) -> DagScenario:
    rng = random.Random(seed)
    return DagScenario(
        seed=seed,
        version=rng.choice(["v3", "v4"]),
        mapped=rng.random() < 0.5,
        retries=rng.randint(0, 2),
        skew=rng.choice([-600.0, 600.0, rng.uniform(-600, 600)]),
        failure=rng.choice(["none", "after-execute", "after-launch", "run-fails"]),
        launch_faults=[rng.choice(list(FAULTS)) for _ in range(rng.randint(0, 3))],
        lookup_faults=[rng.choice(LOOKUP_FAULTS) for _ in range(rng.choice([0, 0, 1, 3]))],
    )


def failing(base: type, failure: str) -> type:
    """``base`` failing once per task instance after its launch or after execute()."""
    seen: set[str] = set()

    def once(context: Any) -> bool:
        key = f"{context['ti'].dag_id}.{context['ti'].map_index}"
        if key in seen:
            return False
        seen.add(key)
        return True

    class Failing(base):  # type: ignore[misc,valid-type]
        def launch(self, context: Any, stale_run_uids: list[str]) -> str:
            run_uid = super().launch(context, stale_run_uids)
            if failure == "after-launch" and once(context):
                raise RuntimeError("the worker dies after the launch answered (review)")
            return str(run_uid)

        def execute(self, context: Any) -> Any:
            result = super().execute(context)
            if failure == "after-execute" and once(context):
                raise RuntimeError("the try fails after execute() returned (review)")
            return result

    Failing.__name__ = base.__name__
    return Failing


def run_dag_scenario(emulator: Any, s: DagScenario, dag_id: str) -> None:
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator
    from tests.airflow_helpers import make_dag, run_dag
    from tests.invariants.harness import harness_policy

    emulator.reset()
    emulator.configure(
        clock_skew_seconds=s.skew,
        v3_pending_seconds=0.05,
        v3_running_seconds=0.1,
        v3_rows_per_input=1,
        v4_queued_seconds=0.05,
        v4_running_seconds=0.1,
    )
    hook = CaptainDataHook(retry_policy=POLICY)
    groups = [[{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{g:05d}"}] for g in range(2)]
    kwargs: dict[str, Any] = {
        "task_id": "launch",
        "retries": s.retries,
        "retry_delay": timedelta(0),
        "poll_interval": 0.05,
        "deferrable": False,
    }
    if s.version == "v3":
        workflow = next(w.uid for w in hook.list_workflows() if len(w.steps) == 1)
        base: type = CaptainDataLaunchWorkflowOperator
        kwargs["workflow_uid"] = workflow
        launch_path, list_path = V3_LAUNCH, f"/v3/workflows/{workflow}/jobs"
        if s.failure == "run-fails":
            emulator.force_outcome(workflow, "shutdown", error_message="forced")
    else:
        base = CaptainDataRunActionOperator
        kwargs.update(action=EXTRACT, mode="async", callback_url="http://127.0.0.1:9/cb")
        launch_path, list_path = V4_LAUNCH, "/v4/runs"
        if s.failure == "run-fails":
            emulator.force_outcome(EXTRACT, "FAILED", error_message="forced")
    for kind in s.launch_faults:
        emulator.add_fault("POST", launch_path, **FAULTS[kind])
    for kind in s.lookup_faults:
        emulator.add_fault("GET", list_path, **FAULTS[kind])
    operator = failing(base, s.failure)
    with make_dag(dag_id) as dag:
        if s.mapped:
            operator.partial(**kwargs).expand(inputs=groups)
        else:
            operator(inputs=groups[0], **kwargs)
    with harness_policy():
        dag_run = run_dag(dag)
    states = {ti.map_index: str(ti.state) for ti in dag_run.get_task_instances()}
    made = acted(emulator, launch_path)
    if s.version == "v3":
        keys = Counter(r["body"]["job_name"] for r in made)
        runs = {r.uid: r for r in hook.list_workflow_runs(workflow)}
        by_key = {k: [r for r in runs.values() if r.name == k] for k in keys}
    else:
        keys = Counter(r["body"]["callback"]["url"] for r in made)
        runs = {r.uid: r for r in hook.list_action_runs(action_name=EXTRACT)}
        by_key = {k: [r for r in runs.values() if (r.callback or {}).get("url") == k] for k in keys}
    live = {k: [r.uid for r in rs if r.status not in FAILED_STATUSES] for k, rs in by_key.items()}
    detail = f"{s}: states {states}, launches per identity {dict(keys)}, runs not failed {live}"
    assert all(len(v) <= 1 for v in live.values()), "launched twice: " + detail
    assert len(keys) <= (2 if s.mapped else 1), detail
    print("REVIEW", detail)


@pytest.mark.usefixtures("airflow_db")
def test_dag_launch_fuzz(captaindata_emulator: Any) -> None:
    for seed in range(SEED, SEED + DAG_SCENARIOS):
        run_dag_scenario(captaindata_emulator, draw_dag(seed), f"review_launch_{seed}")


# -- break: the lookup takes only the newest match, and gives up when that one is stale --------


def shifted(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(run["created_at"]).timestamp() + seconds
    created = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**run, "created_at": created}


@pytest.mark.usefixtures("airflow_db")
def test_v4_retry_waits_on_its_live_run_listed_below_a_failed_run_of_the_launch(
    captaindata_emulator: Any,
) -> None:
    """Try 1's run A fails. Try 2 launches run B; the worker dies right after the launch answered
    (nothing recorded). Captain Data's clocks: A was created by a server 10 minutes ahead, B by
    one 10 minutes behind (each within the 10-minute skew the guarantee allows), so the run list
    sorted by -created_at shows A above B. Try 3 must wait on B; when lookups stopped at the
    newest match (A, failed), it launched run C while B was still running.

    The emulator applies one skew to every date at read time, so the two clocks are modelled by
    the run list's answer (the runs as they are, dates as the two servers wrote them)."""
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from tests.airflow_helpers import make_dag, run_dag
    from tests.invariants.harness import harness_policy

    emulator = captaindata_emulator
    emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.1)
    emulator.force_outcome(EXTRACT, "FAILED", error_message="try 1's run fails")
    hook = CaptainDataHook(retry_policy=POLICY)
    tries: list[int] = []

    def between_tries(context: Any) -> None:
        tries.append(1)
        if len(tries) == 1:  # A failed: the next runs last a while
            emulator.configure(v4_running_seconds=3)
            return
        a, b = sorted(hook.list_action_runs(action_name=EXTRACT), key=lambda r: r.created_at or "")
        listed = sorted(
            [shifted(a.model_dump(mode="json"), +600), shifted(b.model_dump(mode="json"), -600)],
            key=lambda r: r["created_at"],
            reverse=True,
        )
        emulator.add_fault("GET", "/v4/runs", body=listed, times=None)

    launches: list[str] = []

    class DiesAfterTry2sLaunch(CaptainDataRunActionOperator):
        def launch(self, context: Any, stale_run_uids: list[str]) -> str:
            launches.append(run_uid := super().launch(context, stale_run_uids))
            if len(launches) == 2:
                raise RuntimeError("the worker dies right after try 2's launch answered (review)")
            return run_uid

    with make_dag("review_stale_listed_first") as dag:
        DiesAfterTry2sLaunch(
            task_id="launch", inputs=[PROFILE], retries=2, on_retry_callback=between_tries, **ASYNC_TASK
        )
    with harness_policy():
        run_dag(dag)
    made = acted(emulator, V4_LAUNCH)
    emulator.clear_faults()
    final = {uid: hook.get_action_run(uid).status for uid in launches}
    assert len(tries) == 2, f"the retry callbacks ran {len(tries)} times"
    # A failed; B (try 2) and anything try 3 launched besides B are the same launch.
    assert len(made) == 2, f"{len(made)} runs launched for one launch identity: {launches} {final}"


def test_v4_launch_once_finds_the_run_it_made_below_a_stale_run_listed_above_it(
    captaindata_emulator: Any,
) -> None:
    """The same mechanism inside one call of run_action_async_once: an earlier failed run A of
    the same key (passed as stale), a launch answered 500 after the API created run B, and a
    run list (clocks of two servers, each within the 10-minute skew) showing A above B. The
    lookup passes over A and finds B; when it stopped at the newest match it launched C."""
    import threading
    import time

    emulator = captaindata_emulator
    emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.1)
    policy = RetryPolicy(
        attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=2, launch_lookup_delay=1
    )
    hook = CaptainDataHook(retry_policy=policy)
    tag = "reviewstaleabove"
    url = f"http://127.0.0.1:9/cb?airflow_launch={tag}"
    emulator.force_outcome(EXTRACT, "FAILED", error_message="an earlier try's run")
    stale = hook.run_action_async(EXTRACT, [PROFILE], callback_url=url).uid
    deadline = time.monotonic() + 10
    while hook.get_action_run(stale).status != "FAILED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    emulator.configure(v4_running_seconds=30)
    emulator.add_fault("POST", V4_LAUNCH, status=500, after=True)

    def two_clocks() -> None:  # once B exists: the list as the two servers dated the runs
        while len(acted(emulator, V4_LAUNCH)) < 2:
            time.sleep(0.02)
        runs = {r.uid: r.model_dump(mode="json") for r in hook.list_action_runs(action_name=EXTRACT)}
        made = next(uid for uid in runs if uid != stale)
        listed = [shifted(runs[stale], +600), shifted(runs[made], -600)]
        emulator.add_fault("GET", "/v4/runs", body=listed, times=None)

    watcher = threading.Thread(target=two_clocks, daemon=True)
    watcher.start()
    returned = hook.run_action_async_once(
        EXTRACT, [PROFILE], callback_url=url, launch_tag=tag, stale_run_uids=[stale]
    )
    watcher.join(timeout=5)
    made = acted(emulator, V4_LAUNCH)
    assert len(made) == 2, f"{len(made)} runs made (1 stale, then 1 expected); returned {returned}"


# -- hazard: a v4 BLOCKED run counts as failed, so a retry relaunches beside a resumable run ----


@pytest.mark.usefixtures("airflow_db")
def test_v4_retry_after_a_blocked_run_launches_no_second_run(captaindata_emulator: Any) -> None:
    """A BLOCKED run (an integration needs attention) can be resumed (POST /v4/runs/{uid}/resume),
    like a v3 ``paused`` run, which the provider never relaunches beside. The task fails and
    its retry refuses to launch beside A (it used to launch run B; the user then fixed the
    integration and resumed A: two runs acting on the same inputs)."""
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from tests.airflow_helpers import make_dag, run_dag
    from tests.invariants.harness import harness_policy

    emulator = captaindata_emulator
    emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.1)
    emulator.force_outcome(EXTRACT, "BLOCKED", error_message="the LinkedIn account needs attention")
    hook = CaptainDataHook(retry_policy=POLICY)
    with make_dag("review_blocked_then_retry") as dag:
        CaptainDataRunActionOperator(task_id="launch", inputs=[PROFILE], retries=1, **ASYNC_TASK)
    with harness_policy():
        run_dag(dag)
    made = acted(emulator, V4_LAUNCH)
    blocked = [r.uid for r in hook.list_action_runs(action_name=EXTRACT) if r.status == "BLOCKED"]
    for uid in blocked:  # the user fixes the integration and resumes the run in Captain Data
        hook.resume_action_run(uid)
    assert len(made) == 1, f"{len(made)} runs of one launch identity; the BLOCKED one {blocked} was resumable"


# -- guard (passes): the clock margin of launch_once matters once a burst pushes the run to page 2


def test_v3_launch_once_finds_its_run_behind_a_full_page_of_newer_runs(captaindata_emulator: Any) -> None:
    """Captain Data's clock 10 minutes behind; the launch is answered 500 after
    the run was created; while the hook waits to look it up, 60 other runs of the workflow are
    launched (mapped siblings, other DAGs), so this launch's run is on page 2 of the run list.
    The lookup must read on past page 1, whose runs are all dated before the call began on a
    clock 10 minutes behind: without LOOKUP_CLOCK_MARGIN in launch_once it stops there and
    launches a second run."""
    import threading
    import time

    emulator = captaindata_emulator
    emulator.configure(clock_skew_seconds=-600, v3_pending_seconds=0.05, v3_running_seconds=30)
    policy = RetryPolicy(
        attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=2, launch_lookup_delay=8
    )
    hook = CaptainDataHook(retry_policy=policy)
    workflow = next(w.uid for w in hook.list_workflows() if len(w.steps) == 1)
    steps = [{"step_uid": hook.get_workflow_details(workflow).steps[0].step_uid}]
    emulator.add_fault("POST", V3_LAUNCH, status=500, after=True)

    def burst() -> None:
        while not acted(emulator, V3_LAUNCH):
            time.sleep(0.01)
        for i in range(60):
            hook.launch_workflow(workflow, job_name=f"sibling {i}", inputs=[PROFILE], steps=steps)

    sibling_launches = threading.Thread(target=burst, daemon=True)
    sibling_launches.start()
    returned = hook.launch_workflow_once(workflow, job_name="review burst", inputs=[PROFILE], steps=steps)
    sibling_launches.join(timeout=10)
    ours = [r for r in acted(emulator, V3_LAUNCH) if r["body"].get("job_name") == "review burst"]
    lists = emulator.requests(method="GET", path=f"/v3/workflows/{workflow}/jobs")
    siblings = [r for r in acted(emulator, V3_LAUNCH) if r["body"].get("job_name", "").startswith("sibling")]
    assert len(siblings) == 60, "the burst did not finish"
    assert len(ours) == 1, f"{len(ours)} runs launched; returned {returned}"
    assert [q["query"].get("page") for q in lists] == ["0", "1"], "the run was not behind page 1"


PROFILES = [{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}"} for i in range(2)]


@pytest.mark.usefixtures("airflow_db")
def test_v4_retry_after_a_try_failed_elsewhere_does_not_relaunch_beside_a_stopped_run(
    captaindata_emulator: Any,
) -> None:
    """v4 cannot stop runs: a STOPPED run was stopped by someone in Captain Data, part-way through
    its inputs, and can be resumed. The waiter fails it without retries; when the try failed for
    another reason first (a run read refused), the retry used to launch every input again."""
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
    from tests.airflow_helpers import make_dag, run_dag
    from tests.invariants.harness import harness_policy

    emulator = captaindata_emulator
    emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.1)
    emulator.force_outcome(EXTRACT, "STOPPED", error_message="stopped by a user")
    # The first try's first read of its run fails (not a stop): the try fails, retryable.
    emulator.add_fault("GET", "/v4/runs/*", status=400, times=1)
    with make_dag("stopped_then_retry") as dag:
        CaptainDataRunActionOperator(task_id="launch", inputs=PROFILES, retries=1, **ASYNC_TASK)
    with harness_policy():
        run_dag(dag)
    made = acted(emulator, V4_LAUNCH)
    assert len(made) == 1, f"{len(made)} runs of one launch identity: a retry relaunched beside a STOPPED run"
