"""The provider on the production-like stack of ``make stack``, through faults.

CeleryExecutor with Redis, the metadata database on PostgreSQL, two API servers behind a
round-robin proxy, two triggerers, results and callback pages in S3 (SeaweedFS), the emulator
over HTTPS. Each fault scenario checks what a user needs: exactly one launch per task (the
emulator's request log), exactly the run's rows in S3 (read back by a downstream DAG on the
worker), one DAG run per finished Captain Data run, and every DAG run successful.

Slow (minutes) and heavy: run with ``make stack-test`` (``CAPTAINDATA_STACK_TEST=1``); a plain
``pytest`` run skips it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.services,
    pytest.mark.airflow3,
    pytest.mark.skipif(
        os.environ.get("CAPTAINDATA_STACK_TEST") != "1",
        reason="starts the whole stack (minutes): run `make stack-test`",
    ),
    pytest.mark.timeout(900),
]

LAUNCH_V3 = "/v3/workflows/*/schedule"
LIVE_V4 = "/v4/actions/*/run/live"
ROWS_PER_V3_INPUT = 2
BUCKET_PATH = (
    "captaindata"  # the stack's bucket, as s3fs names it  # the emulator's default v3_rows_per_input
)
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from stack import STACK_DIR, Stack

    with Stack(base=STACK_DIR / "test", label="stack-test") as running:
        FIGURES.update({f"start-up: {k}": v for k, v in running.timings.items()})
        yield running
        FIGURES.update({f"memory MiB: {k}": v for k, v in running.memory().items()})
    figures = STACK_DIR / "test" / "figures.json"
    figures.write_text(json.dumps(FIGURES, indent=2))
    print("\nstack figures:\n" + "\n".join(f"  {k}: {v:.1f}" for k, v in FIGURES.items()))


@pytest.fixture
def emulator(stack: Any) -> Any:
    """The stack's emulator with no faults and an empty request log."""
    stack.emulator.clear_faults()
    stack.emulator.clear_requests()
    yield stack.emulator
    stack.emulator.clear_faults()


def launches(stack: Any, run_id: str) -> Counter[str]:
    """The v3 launch POSTs of one DAG run, counted by the job name they carry."""
    names = (str(r["body"].get("job_name")) for r in stack.emulator.requests(method="POST", path=LAUNCH_V3))
    return Counter(name for name in names if run_id in name)


def live_calls(stack: Any) -> Counter[str]:
    """The v4 live POSTs since the request log was cleared, counted by the input index they carry."""
    calls = stack.emulator.requests(method="POST", path=LIVE_V4)
    return Counter(int(r["body"]["input"]["custom_data"]["airflow_input_index"]) for r in calls)


def read_back(stack: Any, prefix: str) -> dict[str, Any]:
    """The downstream DAG reads the result files under ``prefix`` from S3, on the worker."""
    run_id = stack.trigger("stack_downstream", {"prefix": prefix})
    assert stack.wait_for_runs([("stack_downstream", run_id)]) == {("stack_downstream", run_id): "success"}
    return dict(stack.xcom("stack_downstream", run_id, "read_results"))


def tries(stack: Any, dag_id: str, run_id: str) -> dict[str, int]:
    return {
        f"{ti['task_id']}[{ti['map_index']}]": ti["try_number"] for ti in stack.task_instances(dag_id, run_id)
    }


def test_examples_write_results_and_callbacks_to_s3_through_both_api_servers(stack: Any) -> None:
    started = time.monotonic()
    states = stack.run_examples()
    FIGURES[f"examples: all {len(states)} DAG runs (s)"] = time.monotonic() - started
    assert set(states.values()) == {"success"}, states
    # The asset consumer was started by the producer's results landing in S3, and read them;
    # the event-scheduled example by the run the stack started outside Airflow.
    assert "captaindata_asset_consumer" in dict(states.keys()), states
    runs = dict(states.keys())  # dag_id -> run_id
    (event_run,) = stack.event_runs().values()
    assert event_run[0] == "success" and len(event_run[1]) == 1, event_run

    # Every callback page went through the proxy, alternately to each API server, and each
    # server's own receiver stored what it got (its access log says 200).
    callbacks = [
        r for r in stack.proxy_log() if r["method"] == "POST" and r["path"].startswith("/captaindata/")
    ]
    assert {r["backend"] for r in callbacks} == {0, 1}, callbacks
    assert all(r["status"] == 200 for r in callbacks), callbacks
    for log in ("api-server.log", "api-server-2.log"):
        lines = (stack.log_dir / log).read_text().splitlines()
        assert any("path=/captaindata/v1/" in line and "status_code=200" in line for line in lines), log

    # The async example's 5 rows were reconciled from the pages both servers wrote to S3.
    async_run = runs["captaindata_action_async"]
    assert stack.xcom("captaindata_action_async", async_run, "summary") == {"rows": 5}
    fs = stack.s3_fs()
    pages = [p for p in fs.find("captaindata/callbacks/") if p.endswith(".json")]
    assert len(pages) == 5, pages
    # The storage example's file is in S3, whole, and nothing partial is left beside it.
    storage_run = runs["captaindata_workflow_to_storage"]
    written = read_back(stack, stack.s3_uri("examples/captaindata_workflow_to_storage"))
    assert written["files"] == {f"{storage_run}.jsonl": 4} and written["hidden"] == [], written


def test_event_trigger_fires_one_dag_run_per_finished_run_across_a_triggerer_kill(
    stack: Any, emulator: Any
) -> None:
    emulator.configure(v3_running_seconds=2.0)
    try:
        stack.watch_runs()  # the examples unpaused it already; alone, this test does
        before = stack.event_runs()
        holder = wait_for(stack.watcher_holder, "the watcher on a triggerer", timeout=120, every=1)
        victim = next(name for name, job in stack.triggerer_jobs.items() if job == holder)
        survivor = next(job for name, job in stack.triggerer_jobs.items() if name != victim)

        started = time.monotonic()
        stack.kill(victim)
        # A run that finishes while no triggerer watches: the survivor must fire it, once.
        during = stack.start_outside_run("finished while the watcher's triggerer was dead")
        wait_for(lambda: stack.outside_run_status(during) == "finished", "the run", timeout=60, every=0.5)
        assert stack.watcher_holder() == holder  # not taken over yet: it finished unwatched
        wait_for(lambda: stack.watcher_holder() == survivor, "the takeover", timeout=180, every=1)
        FIGURES["event watcher's triggerer kill -9: takeover (s)"] = time.monotonic() - started
        wait_for(
            lambda: fired(stack, during), "the DAG run of the run finished meanwhile", timeout=240, every=1
        )
        FIGURES["event watcher's triggerer kill -9: DAG run done after the kill (s)"] = (
            time.monotonic() - started
        )
        # A run that finishes after the takeover fires too.
        after = stack.start_outside_run("finished after the takeover")
        wait_for(lambda: fired(stack, after), "the DAG run of the run finished after", timeout=240, every=1)
        stack.revive(victim)
        # More looks of the survivor (and the revived triggerer): no run fires again.
        looks = stack.watcher_looks()
        wait_for(lambda: stack.watcher_looks() >= looks + 5, "5 more looks", timeout=120, every=1)
    finally:
        emulator.configure(v3_running_seconds=10.0)
    runs = stack.event_runs()
    new = sorted((uids for run_id, (_, uids) in runs.items() if run_id not in before), key=str)
    assert new == sorted([[during], [after]], key=str), runs
    assert {state for state, _ in runs.values()} == {"success"}, runs
    fired_for = Counter(uid for _, uids in runs.values() for uid in uids)
    assert set(fired_for.values()) == {1}, fired_for  # the examples' run did not fire again
    # What the survivor resumed from: the watermark in the asset state store, in PostgreSQL.
    stored = stack.sql("SELECT key FROM asset_state_store WHERE key LIKE %s", ["captaindata.run_finished.%"])
    assert stored, "no watermark in the asset state store"


def fired(stack: Any, uid: str) -> bool:
    """Whether a finished DAG run of the event example was started by ``uid``'s event."""
    return any(uid in uids and state in ("success", "failed") for state, uids in stack.event_runs().values())


def test_triggerer_killed_with_20_deferred_tasks_and_scheduler_restarted(stack: Any, emulator: Any) -> None:
    # The runs last until all 20 tasks have deferred, on a loaded machine too (4 worker slots).
    emulator.configure(v3_running_seconds=150.0)
    run_id = stack.trigger("stack_deferred", {"tasks": 20})

    def deferred() -> list[dict[str, Any]]:
        tis = [ti for ti in stack.task_instances("stack_deferred", run_id) if ti["task_id"] == "launch"]
        waiting = [ti for ti in tis if ti["state"] == "deferred" and ti.get("triggerer_job")]
        return waiting if len(waiting) == 20 else []

    waiting = wait_for(deferred, "20 tasks deferred", timeout=400, every=2)
    holders = Counter(ti["triggerer_job"]["id"] for ti in waiting)
    victim = max(stack.triggerer_jobs, key=lambda name: holders.get(stack.triggerer_jobs[name], 0))
    survivor = next(job for name, job in stack.triggerer_jobs.items() if name != victim)
    moved = {ti["map_index"] for ti in waiting if ti["triggerer_job"]["id"] == stack.triggerer_jobs[victim]}
    assert moved, f"no trigger on either triggerer? {holders}"

    started = time.monotonic()
    stack.kill(victim)
    stack.restart("scheduler")

    def taken_over() -> bool:
        tis = {ti["map_index"]: ti for ti in stack.task_instances("stack_deferred", run_id)}
        return all(
            tis[i]["state"] == "success" or (tis[i].get("triggerer_job") or {}).get("id") == survivor
            for i in moved
        )

    wait_for(
        taken_over, f"the {len(moved)} triggers of the killed triggerer taken over", timeout=180, every=1
    )
    FIGURES["triggerer kill -9: takeover (s)"] = time.monotonic() - started
    assert stack.wait_for_runs([("stack_deferred", run_id)]) == {("stack_deferred", run_id): "success"}
    FIGURES["triggerer kill -9 + scheduler restart: run done after the kill (s)"] = time.monotonic() - started
    stack.revive(victim)

    # The takeover resumed the waits: no task retried, none launched twice.
    assert set(tries(stack, "stack_deferred", run_id).values()) == {1}
    sent = launches(stack, run_id)
    assert len(sent) == 20 and set(sent.values()) == {1}, sent
    results = read_back(stack, stack.s3_uri(f"stack/stack_deferred/{run_id}"))
    assert results["rows"] == 20 * ROWS_PER_V3_INPUT and len(results["files"]) == 20, results
    assert results["hidden"] == []


def test_triggerer_stalled_past_its_heartbeat_resumes_without_stopping_the_runs(
    stack: Any, emulator: Any
) -> None:
    # The other triggerer takes the stalled one's triggers over; when the stalled one resumes,
    # Airflow 3.3 cancels them there "by user action" (on_kill): the runs must go on. They last
    # long enough (on a loaded machine too) to be still running then.
    emulator.configure(v3_running_seconds=120.0)
    run_id = stack.trigger("stack_deferred", {"tasks": 6})

    def deferred() -> list[dict[str, Any]]:
        tis = [ti for ti in stack.task_instances("stack_deferred", run_id) if ti["task_id"] == "launch"]
        waiting = [ti for ti in tis if ti["state"] == "deferred" and ti.get("triggerer_job")]
        return waiting if len(waiting) == 6 else []

    waiting = wait_for(deferred, "6 tasks deferred", timeout=300, every=1)
    holders = Counter(ti["triggerer_job"]["id"] for ti in waiting)
    stalled = max(stack.triggerer_jobs, key=lambda name: holders.get(stack.triggerer_jobs[name], 0))
    survivor = next(job for name, job in stack.triggerer_jobs.items() if name != stalled)
    moved = {ti["map_index"] for ti in waiting if ti["triggerer_job"]["id"] == stack.triggerer_jobs[stalled]}

    def taken_over() -> bool:
        tis = {ti["map_index"]: ti for ti in stack.task_instances("stack_deferred", run_id)}
        return all((tis[i].get("triggerer_job") or {}).get("id") == survivor for i in moved)

    with stack.stalled(stalled):
        wait_for(taken_over, f"the {len(moved)} triggers of the stalled triggerer taken over", 120, 1)
    assert stack.wait_for_runs([("stack_deferred", run_id)]) == {("stack_deferred", run_id): "success"}
    assert emulator.requests(method="POST", path="/v3/jobs/*/cancel") == []  # no run stopped
    assert set(tries(stack, "stack_deferred", run_id).values()) == {1}
    sent = launches(stack, run_id)
    assert len(sent) == 6 and set(sent.values()) == {1}, sent


def test_worker_killed_right_after_the_launch_post(stack: Any, emulator: Any) -> None:
    emulator.configure(v3_running_seconds=8.0)
    # The launch is made at once but answered 3 s late: the kill lands while the worker
    # waits for the answer, the most ambiguous moment (launched, and not told so).
    emulator.add_fault("POST", LAUNCH_V3, delay=3.0, times=1)
    run_id = stack.trigger("stack_launch", {"profiles": 10})
    wait_for(lambda: launches(stack, run_id), "the launch POST", timeout=300, every=0.1)
    started = time.monotonic()
    stack.kill("celery-worker")
    stack.revive("celery-worker")

    assert stack.wait_for_runs([("stack_launch", run_id)]) == {("stack_launch", run_id): "success"}
    FIGURES["worker kill -9 after a launch POST: run done after the kill (s)"] = time.monotonic() - started
    assert tries(stack, "stack_launch", run_id)["launch[-1]"] >= 2  # the kill cost a try
    assert list(launches(stack, run_id).values()) == [1]  # the retry found the run: no second launch
    results = read_back(stack, stack.s3_uri(f"stack/stack_launch/{run_id}"))
    assert results["rows"] == 10 * ROWS_PER_V3_INPUT and results["hidden"] == [], results


def test_worker_killed_during_a_live_fan_out(stack: Any, emulator: Any) -> None:
    emulator.configure(live_latency_seconds=0.5)
    try:
        run_id = stack.trigger("stack_fanout", {"profiles": 24})
        wait_for(lambda: sum(live_calls(stack).values()) >= 8, "8 live calls", timeout=300, every=0.1)
        started = time.monotonic()
        stack.kill("celery-worker")
        stack.revive("celery-worker")
        assert stack.wait_for_runs([("stack_fanout", run_id)]) == {("stack_fanout", run_id): "success"}
        FIGURES["worker kill -9 during a fan-out: run done after the kill (s)"] = time.monotonic() - started
    finally:
        emulator.configure(live_latency_seconds=0.0)
    assert tries(stack, "stack_fanout", run_id)["message[-1]"] >= 2
    sent = live_calls(stack)
    assert max(sent.values()) == 1, f"inputs sent twice: {sorted(i for i, n in sent.items() if n > 1)}"
    # The calls in flight at the kill (at most max_concurrency) have no known outcome: reported,
    # never resent. Every other input's row is in S3, once.
    unknown = {e["input_index"] for e in stack.xcom("stack_fanout", run_id, "message", key="input_errors")}
    FIGURES["worker kill -9 during a fan-out: inputs in flight, reported unknown"] = len(unknown)
    assert len(unknown) <= 2 and set(range(24)) - unknown <= set(sent), (unknown, sent)
    results = read_back(stack, stack.s3_uri(f"stack/stack_fanout/{run_id}"))
    assert results["rows"] == 24 - len(unknown) and results["hidden"] == [], results
    assert sorted(map(int, results["inputs"])) == sorted(set(range(24)) - unknown), results


def test_s3_refusing_writes_while_results_are_written(stack: Any, emulator: Any) -> None:
    emulator.configure(v3_running_seconds=3.0, v3_page_size=5)
    try:
        # 30 profiles, 60 rows: 12 pages, each answered 0.5 s late, so the pages take ~6 s and
        # the file is uploaded about then, inside the 12 s during which S3 refuses writes.
        emulator.add_fault("GET", "/v3/jobs/*/results", delay=0.5, times=None)
        run_id = stack.trigger("stack_launch", {"profiles": 30})
        wait_for(
            lambda: stack.emulator.requests(method="GET", path="/v3/jobs/*/results"),
            "the first results page",
            timeout=300,
            every=0.1,
        )
        started = time.monotonic()
        with stack.s3_refusing_writes():
            time.sleep(12)
        writable_again = time.time()
        emulator.clear_faults()
        assert stack.wait_for_runs([("stack_launch", run_id)]) == {("stack_launch", run_id): "success"}
        FIGURES["S3 refusing writes 12 s: run done after the refusal began (s)"] = time.monotonic() - started
    finally:
        emulator.configure(v3_page_size=1000)
    # The upload was held back until S3 took writes again (the S3 client retries a refused
    # write; past its retries the try fails and the task retries), and it is whole.
    final = f"{BUCKET_PATH}/stack/stack_launch/{run_id}/results.jsonl"
    assert stack.s3_fs().info(final)["LastModified"].timestamp() >= writable_again - 2
    FIGURES["S3 refusing writes 12 s: tries of the task"] = tries(stack, "stack_launch", run_id)["launch[-1]"]
    assert list(launches(stack, run_id).values()) == [1]
    results = read_back(stack, stack.s3_uri(f"stack/stack_launch/{run_id}"))
    assert results["rows"] == 60 and results["hidden"] == [], results


def test_s3_outage_fails_the_results_write_and_the_retry_writes_the_whole_file(
    stack: Any, emulator: Any
) -> None:
    emulator.configure(v3_running_seconds=3.0, v3_page_size=5)
    try:
        # 12 pages answered 1 s late: the write comes ~12 s after the first page, well after the
        # outage below has begun (without the delay the write won that race and the try never
        # failed; the check inside the outage makes a lost race a clear failure, not a timeout).
        emulator.add_fault("GET", "/v3/jobs/*/results", delay=1.0, times=None)
        run_id = stack.trigger("stack_launch", {"profiles": 30})
        final = f"{BUCKET_PATH}/stack/stack_launch/{run_id}/results.jsonl"
        wait_for(
            lambda: stack.emulator.requests(method="GET", path="/v3/jobs/*/results"),
            "the first results page",
            timeout=300,
            every=0.1,
        )
        started = time.monotonic()

        def first_try_failed() -> bool:
            (ti,) = [t for t in stack.task_instances("stack_launch", run_id) if t["task_id"] == "launch"]
            return bool(ti["state"] == "up_for_retry" or ti["try_number"] >= 2)

        # S3 refuses writes until the write has failed the try, past the S3 client's retries.
        with stack.s3_refusing_writes():
            assert not stack.s3_fs().exists(final), "written before the outage began"
            wait_for(first_try_failed, "the results write to fail the try", timeout=600, every=0.5)
        emulator.clear_faults()
        writable_again = time.time()
        FIGURES["S3 outage failing the try: refused for (s)"] = time.monotonic() - started
        assert stack.wait_for_runs([("stack_launch", run_id)]) == {("stack_launch", run_id): "success"}
        FIGURES["S3 outage failing the try: run done after the outage began (s)"] = time.monotonic() - started
    finally:
        emulator.configure(v3_page_size=1000)
    assert tries(stack, "stack_launch", run_id)["launch[-1]"] >= 2
    assert list(launches(stack, run_id).values()) == [1]  # the retry found the run: no second launch
    assert stack.s3_fs().info(final)["LastModified"].timestamp() >= writable_again - 2
    results = read_back(stack, stack.s3_uri(f"stack/stack_launch/{run_id}"))
    assert results["rows"] == 60 and results["hidden"] == [], results
    assert sorted(Counter(results["inputs"]).values()) == [2] * 30, results  # every profile's 2 rows, once
