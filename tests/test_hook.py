"""CaptainDataHook and CaptainDataAsyncHook against the emulator, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataTransportError,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

FAST = RetryPolicy(
    attempts=4, backoff_initial=0.05, backoff_max=0.2, read_timeout=5.0, launch_lookup_delay=0.3
)


def header(record: dict[str, Any], name: str) -> str | None:
    return {k.lower(): v for k, v in record["headers"].items()}.get(name.lower())


@pytest.fixture
def hook(captaindata_emulator: Any) -> CaptainDataHook:
    return CaptainDataHook(retry_policy=FAST)


@pytest.fixture
def workflow_uid(hook: CaptainDataHook) -> str:
    return next(w.uid for w in hook.list_workflows() if len(w.steps) == 1)


def launch(hook: CaptainDataHook, workflow_uid: str, n: int = 3, job_name: str = "test-run") -> str:
    steps = [{"step_uid": hook.get_workflow_details(workflow_uid).steps[0].step_uid}]
    inputs = [{"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i}"} for i in range(n)]
    return hook.launch_workflow(workflow_uid, inputs=inputs, steps=steps, job_name=job_name).job_uid


def wait_finished(hook: CaptainDataHook, job_uid: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while hook.get_workflow_run(job_uid).status != "finished":
        assert time.monotonic() < deadline, "run did not finish"
        time.sleep(0.1)


# -- auth -----------------------------------------------------------------------------------


def test_v3_and_v4_auth_headers_are_sent(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    hook.get_workspace()
    hook.get_workspaces()
    v3 = captaindata_emulator.requests(method="GET", path="/v3/workspace")[-1]
    v4 = captaindata_emulator.requests(method="GET", path="/v4/workspaces")[-1]
    assert header(v3, "Authorization") == f"x-api-key {captaindata_emulator.api_key}"
    assert header(v3, "x-project-id") == captaindata_emulator.project_uid
    assert header(v4, "X-API-Key") == captaindata_emulator.api_key
    assert header(v4, "Authorization") is None
    assert header(v3, "User-Agent").startswith("airflow-provider-captaindata/")


def test_bad_key_is_401_without_retry_and_without_the_key(
    captaindata_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = captaindata_emulator.connection_json()
    conn["password"] = "not-the-right-key"
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    hook = CaptainDataHook(retry_policy=FAST)
    with pytest.raises(CaptainDataAPIError) as info:
        hook.get_workspaces()
    assert info.value.status_code == 401
    assert "not-the-right-key" not in str(info.value)
    assert len(captaindata_emulator.requests(path="/v4/workspaces")) == 1
    ok, message = hook.test_connection()
    assert not ok and "401" in message and "not-the-right-key" not in message


def test_test_connection_ok(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert "v3 OK" in message and "v4 OK" in message
    assert captaindata_emulator.api_key not in message


# -- retries --------------------------------------------------------------------------------


def test_5xx_is_retried_then_succeeds(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    job_uid = launch(hook, workflow_uid)
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}", status=503, times=2)
    assert hook.get_workflow_run(job_uid).uid == job_uid
    assert [r["status"] for r in captaindata_emulator.requests(path=f"/v3/jobs/{job_uid}")] == [503, 503, 200]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_each_retryable_status(hook: CaptainDataHook, captaindata_emulator: Any, status: int) -> None:
    captaindata_emulator.add_fault("GET", "/v4/workspaces", status=status, times=1)
    hook.get_workspaces()
    assert [r["status"] for r in captaindata_emulator.requests(path="/v4/workspaces")] == [status, 200]


def test_retries_give_up_after_the_policy_attempts(
    hook: CaptainDataHook, captaindata_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    captaindata_emulator.add_fault("GET", "/v4/workspaces", status=503, times=None)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_captaindata.client.transport"):
        with pytest.raises(CaptainDataAPIError) as info:
            hook.get_workspaces()
        assert info.value.status_code == 503
        assert len(captaindata_emulator.requests(path="/v4/workspaces")) == FAST.attempts
        # The first try runs outside tenacity's loop: numbering and count must not show it.
        retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
        assert [m.split("; ")[-1].split(" in ")[0] for m in retries] == [
            "retry 1 of 3",
            "retry 2 of 3",
            "retry 3 of 3",
        ]

        caplog.clear()
        captaindata_emulator.add_fault("GET", "/v4/runs/*", status=503, times=None)
        with pytest.raises(CaptainDataAPIError):
            asyncio.run(CaptainDataAsyncHook(retry_policy=FAST).get_run("v4", "any-run"))
        assert len(captaindata_emulator.requests(path="/v4/runs/*")) == FAST.attempts
        assert len([r for r in caplog.records if "retry" in r.getMessage()]) == FAST.attempts - 1


def test_429_honours_retry_after(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    captaindata_emulator.add_fault("GET", "/v4/workspaces", status=429, retry_after=1.5, times=1)
    started = time.monotonic()
    hook.get_workspaces()
    elapsed = time.monotonic() - started
    # The backoff alone would wait at most 0.2 s: only the header explains 1.5 s.
    assert 1.5 <= elapsed < 5.0
    log = captaindata_emulator.requests(path="/v4/workspaces")
    assert [r["status"] for r in log] == [429, 200]
    assert log[1]["time"] - log[0]["time"] >= 1.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_not_retried(hook: CaptainDataHook, captaindata_emulator: Any, status: int) -> None:
    captaindata_emulator.add_fault(
        "GET", "/v4/workspaces", status=status, times=1, error_label="SOME_LABEL", message="went wrong"
    )
    with pytest.raises(CaptainDataAPIError) as info:
        hook.get_workspaces()
    assert info.value.status_code == status
    assert len(captaindata_emulator.requests(path="/v4/workspaces")) == 1


def test_unknown_run_is_404_without_retry(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    with pytest.raises(CaptainDataAPIError) as info:
        hook.get_workflow_run("00000000-0000-4000-8000-000000000000")
    assert info.value.status_code == 404
    assert len(captaindata_emulator.requests(path="/v3/jobs/*")) == 1


def test_error_body_is_parsed(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    captaindata_emulator.add_fault(
        "GET",
        "/v4/workspaces",
        status=400,
        error_label="INVALID_INPUT",
        message="linkedin_profile_url is required",
    )
    with pytest.raises(CaptainDataAPIError) as info:
        hook.get_workspaces()
    err = info.value
    assert (err.status_code, err.error_label, err.message) == (
        400,
        "INVALID_INPUT",
        "linkedin_profile_url is required",
    )
    assert err.error_scope and err.error_ref
    assert "INVALID_INPUT" in str(err) and err.error_ref in str(err)


def test_malformed_and_dropped_answers_are_retried(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    captaindata_emulator.add_fault("GET", "/v4/workspaces", malformed=True, times=1)
    captaindata_emulator.add_fault("GET", "/v3/workspace", drop=True, times=1)
    hook.get_workspaces()
    hook.get_workspace()
    assert len(captaindata_emulator.requests(path="/v4/workspaces")) == 2
    assert len(captaindata_emulator.requests(path="/v3/workspace")) >= 2


# -- launches are never blindly re-sent ------------------------------------------------------


def _runs_named(hook: CaptainDataHook, workflow_uid: str, name: str) -> int:
    return sum(1 for run in hook.list_workflow_runs(workflow_uid) if run.name == name)


def test_launch_after_5xx_looks_up_before_relaunching(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    captaindata_emulator.add_fault("POST", "/v3/workflows/*/schedule", status=503, times=1)
    steps = [{"step_uid": hook.get_workflow_details(workflow_uid).steps[0].step_uid}]
    job_uid = hook.launch_workflow_once(
        workflow_uid,
        job_name="once-5xx",
        inputs=[{"linkedin_profile_url": "https://x.test/in/a"}],
        steps=steps,
    )
    assert job_uid
    assert _runs_named(hook, workflow_uid, "once-5xx") == 1
    # The lookup ran between the two POSTs, launch_lookup_delay after the failed one.
    log = captaindata_emulator.requests()
    first, second = (i for i, r in enumerate(log) if r["method"] == "POST")
    lookups = [r for r in log[first:second] if r["path"] == f"/v3/workflows/{workflow_uid}/jobs"]
    assert lookups and lookups[0]["time"] - log[first]["time"] >= FAST.launch_lookup_delay


def test_launch_that_timed_out_but_was_processed_is_not_sent_again(
    captaindata_emulator: Any, workflow_uid: str
) -> None:
    hook = CaptainDataHook(
        retry_policy=RetryPolicy(attempts=3, backoff_initial=0.05, read_timeout=0.3, launch_lookup_delay=0.6)
    )
    captaindata_emulator.add_fault("POST", "/v3/workflows/*/schedule", delay=0.5, times=1)
    steps = [
        {"step_uid": CaptainDataHook(retry_policy=FAST).get_workflow_details(workflow_uid).steps[0].step_uid}
    ]
    with pytest.raises(CaptainDataTransportError):
        # Without the lookup, a plain launch gives up ambiguously...
        hook.launch_workflow(
            workflow_uid, job_name="plain", inputs=[{"linkedin_profile_url": "u"}], steps=steps
        )
    captaindata_emulator.add_fault("POST", "/v3/workflows/*/schedule", delay=0.5, times=1)
    job_uid = hook.launch_workflow_once(
        workflow_uid, job_name="once-timeout", inputs=[{"linkedin_profile_url": "u"}], steps=steps
    )
    time.sleep(0.5)
    runs = [
        r
        for r in CaptainDataHook(retry_policy=FAST).list_workflow_runs(workflow_uid)
        if r.name == "once-timeout"
    ]
    assert [r.uid for r in runs] == [job_uid]
    assert len(captaindata_emulator.requests(method="POST", path="/v3/workflows/*/schedule")) == 2


def test_launch_refused_with_429_is_not_looked_up_nor_sent_past_the_policy(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    captaindata_emulator.add_fault("POST", "/v3/workflows/*/schedule", status=429, retry_after=0, times=None)
    with pytest.raises(CaptainDataAPIError) as info:
        hook.launch_workflow_once(workflow_uid, job_name="refused", inputs=[], steps=[])
    assert info.value.status_code == 429
    # A 429 is refused before any work: the transport's own retries, then no lookup.
    assert len(captaindata_emulator.requests(method="POST")) == FAST.attempts
    assert captaindata_emulator.requests(method="GET", path=f"/v3/workflows/{workflow_uid}/jobs") == []


def test_launch_4xx_fails_at_once(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    with pytest.raises(CaptainDataAPIError) as info:
        hook.launch_workflow_once(workflow_uid, job_name="bad", inputs=[], steps=[])
    assert info.value.status_code == 400
    assert len(captaindata_emulator.requests(method="POST")) == 1


V4_ASYNC_LAUNCH = "/v4/actions/linkedin-extract-people/run/async"


def _async_once(hook: CaptainDataHook, tag: str, **kwargs: Any) -> str:
    return hook.run_action_async_once(
        "linkedin-extract-people",
        [{"linkedin_profile_url": "https://www.linkedin.com/in/a"}],
        callback_url=f"http://127.0.0.1:9/cb?airflow_launch={tag}",
        launch_tag=tag,
        **kwargs,
    )


def _async_runs_tagged(hook: CaptainDataHook, tag: str) -> list[str]:
    runs = hook.list_action_runs(action_name="linkedin-extract-people", limit=100)
    return [r.uid for r in runs if tag in str((r.callback or {}).get("url"))]


def test_async_launch_after_5xx_looks_up_before_relaunching(
    hook: CaptainDataHook, captaindata_emulator: Any
) -> None:
    captaindata_emulator.add_fault("POST", V4_ASYNC_LAUNCH, status=502, times=1)
    run_uid = _async_once(hook, "a5" * 12)
    assert _async_runs_tagged(hook, "a5" * 12) == [run_uid]
    paths = [(r["method"], r["path"]) for r in captaindata_emulator.requests()]
    first, second = (i for i, p in enumerate(paths) if p == ("POST", V4_ASYNC_LAUNCH))
    assert ("GET", "/v4/runs") in paths[first:second]


def test_async_launch_that_timed_out_but_was_processed_is_not_sent_again(
    captaindata_emulator: Any,
) -> None:
    hook = CaptainDataHook(
        retry_policy=RetryPolicy(attempts=3, backoff_initial=0.05, read_timeout=0.3, launch_lookup_delay=0.6)
    )
    earlier = _async_once(CaptainDataHook(retry_policy=FAST), "b6" * 12)  # a failed try's run
    captaindata_emulator.add_fault("POST", V4_ASYNC_LAUNCH, delay=0.5, times=1)
    run_uid = _async_once(hook, "b6" * 12, stale_run_uids=[earlier])
    assert run_uid != earlier
    assert sorted(_async_runs_tagged(hook, "b6" * 12)) == sorted([earlier, run_uid])
    assert len(captaindata_emulator.requests(method="POST", path=V4_ASYNC_LAUNCH)) == 2


def test_async_launch_tag_must_be_in_the_callback_url(
    hook: CaptainDataHook, captaindata_emulator: Any
) -> None:
    with pytest.raises(CaptainDataConfigError, match="launch_tag"):
        hook.run_action_async_once(
            "linkedin-extract-people",
            [{"linkedin_profile_url": "u"}],
            callback_url="http://127.0.0.1:9/cb",
            launch_tag="c7" * 12,
        )
    assert captaindata_emulator.requests(method="POST") == []


# -- pagination -----------------------------------------------------------------------------


def test_v3_results_pages_return_every_row_once(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    captaindata_emulator.configure(v3_total_rows=2500, v3_pending_seconds=0.0, v3_running_seconds=0.1)
    job_uid = launch(hook, workflow_uid, n=5)
    wait_finished(hook, job_uid)
    pages = list(hook.iter_workflow_results(job_uid))
    rows = [r for page in pages for r in page]
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert sorted(r["row_index"] for r in rows) == list(range(2500))


def test_v3_results_survive_faults_mid_paging(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    captaindata_emulator.configure(v3_total_rows=2500, v3_pending_seconds=0.0, v3_running_seconds=0.1)
    job_uid = launch(hook, workflow_uid, n=5)
    wait_finished(hook, job_uid)
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}/results", status=503, times=2)
    captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}/results", status=429, retry_after=0.1, times=1)
    rows = [r for page in hook.iter_workflow_results(job_uid) for r in page]
    assert sorted(r["row_index"] for r in rows) == list(range(2500))


def test_v4_live_search_follows_header_pages_to_the_end(
    hook: CaptainDataHook, captaindata_emulator: Any
) -> None:
    captaindata_emulator.configure(v4_search_total_results=35, rate_limit_per_second=None)
    monkey_fast_gate(hook)
    pages = list(
        hook.iter_live_pages(
            "linkedin-search-people",
            {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=data"},
        )
    )
    assert [len(p) for p in pages] == [10, 10, 10, 5]
    rows = [r for p in pages for r in p]
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == 35


def monkey_fast_gate(hook: CaptainDataHook) -> None:
    from airflow_provider_captaindata.client.transport import SyncRateGate

    hook.client.__dict__["_live_gate"] = SyncRateGate(1000.0)


def test_live_input_is_validated_before_any_call(hook: CaptainDataHook, captaindata_emulator: Any) -> None:
    with pytest.raises(CaptainDataConfigError, match="linkedin_profile_url"):
        hook.run_action_live("linkedin-extract-people", {"custom_data": {"id": 1}})
    with pytest.raises(CaptainDataConfigError, match="linkedin-extract-people"):
        hook.run_action_live("linkedin-extract-peple", {"linkedin_profile_url": "u"})
    assert captaindata_emulator.requests() == []


# -- async path: same behaviour --------------------------------------------------------------


def test_async_hook_matches_sync_on_the_same_cases(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    job_uid = launch(hook, workflow_uid)
    async_hook = CaptainDataAsyncHook(retry_policy=FAST)

    async def scenario() -> None:
        captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}", status=503, times=2)
        snap = await async_hook.get_run("v3", job_uid)
        assert snap.uid == job_uid
        assert snap.status in ("pending", "running", "finished")

        captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}", status=429, retry_after=1.0, times=1)
        started = time.monotonic()
        await async_hook.get_run("v3", job_uid)
        assert time.monotonic() - started >= 1.0

        with pytest.raises(CaptainDataAPIError) as info:
            await async_hook.get_run("v3", "00000000-0000-4000-8000-000000000000")
        assert info.value.status_code == 404

        captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}", drop=True, times=1)
        captaindata_emulator.add_fault("GET", f"/v3/jobs/{job_uid}", malformed=True, times=1)
        assert (await async_hook.get_run("v3", job_uid)).uid == job_uid

    asyncio.run(scenario())
    statuses = [r["status"] for r in captaindata_emulator.requests(path=f"/v3/jobs/{job_uid}")]
    assert statuses[:5] == [503, 503, 200, 429, 200]
    assert len(captaindata_emulator.requests(path="/v3/jobs/00000000-0000-4000-8000-000000000000")) == 1


# -- bad input and secrets ------------------------------------------------------------------


def _hook_for(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]) -> CaptainDataHook:
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_BAD", json.dumps(conn))
    return CaptainDataHook("captaindata_bad", retry_policy=FAST)


def test_connection_without_key(monkeypatch: pytest.MonkeyPatch, captaindata_emulator: Any) -> None:
    hook = _hook_for(monkeypatch, {"conn_type": "captaindata", "host": captaindata_emulator.base_url})
    with pytest.raises(CaptainDataConfigError, match="no API key"):
        hook.get_workspaces()
    assert captaindata_emulator.requests() == []


def test_v3_call_without_project_uid(monkeypatch: pytest.MonkeyPatch, captaindata_emulator: Any) -> None:
    conn = {"conn_type": "captaindata", "host": captaindata_emulator.base_url, "password": "k"}
    hook = _hook_for(monkeypatch, conn)
    with pytest.raises(CaptainDataConfigError, match="project uid"):
        hook.get_workspace()
    assert captaindata_emulator.requests() == []


@pytest.mark.parametrize(
    ("extra", "host", "name"),
    [({"v4_base_url": "ftp://x"}, None, "v4_base_url"), ({}, "http://bad host:port", "host")],
)
def test_malformed_base_url(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], host: str | None, name: str
) -> None:
    hook = _hook_for(monkeypatch, {"conn_type": "captaindata", "host": host, "password": "k", "extra": extra})
    with pytest.raises(CaptainDataConfigError, match=name):
        hook.get_workspaces()


def test_key_never_in_reprs_errors_or_logs(
    hook: CaptainDataHook, captaindata_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = captaindata_emulator.api_key
    caplog.set_level(logging.DEBUG)
    captaindata_emulator.add_fault("GET", "/v4/workspaces", status=503, times=None)
    with pytest.raises(CaptainDataAPIError) as info:
        hook.get_workspaces()
    texts = [
        repr(hook),
        str(hook.settings),
        repr(hook.settings),
        str(info.value),
        repr(info.value),
        caplog.text,
    ]
    assert all(key not in text for text in texts)


def test_relaunch_lookup_ignores_an_earlier_failed_run_of_the_same_name(
    hook: CaptainDataHook, captaindata_emulator: Any, workflow_uid: str
) -> None:
    captaindata_emulator.configure(v3_pending_seconds=0.0, v3_running_seconds=0.1)
    captaindata_emulator.force_outcome(workflow_uid, "warning", error_message="bad input")
    old = launch(hook, workflow_uid, job_name="again")
    while hook.get_workflow_run(old).status != "warning":
        time.sleep(0.05)
    captaindata_emulator.add_fault("POST", "/v3/workflows/*/schedule", status=503, times=1)
    steps = [{"step_uid": hook.get_workflow_details(workflow_uid).steps[0].step_uid}]
    new = hook.launch_workflow_once(
        workflow_uid,
        job_name="again",
        stale_run_uids=[old],
        inputs=[{"linkedin_profile_url": "u"}],
        steps=steps,
    )
    assert new != old
    assert _runs_named(hook, workflow_uid, "again") == 2
