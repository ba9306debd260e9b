"""Setting up the emulator's runs for the benchmarks (in the parent, not measured)."""

from __future__ import annotations

import time
import uuid
from typing import Any

PROFILE = {"linkedin_profile_url": "https://www.linkedin.com/in/bench"}


def _hook() -> Any:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

    return CaptainDataHook()


def v3_access() -> dict[str, Any]:
    """The v3 base URL and auth headers, for the baselines (which do not use the provider)."""
    from airflow_provider_captaindata.client.versions import V3

    settings = _hook().settings
    return {"v3_base_url": settings.v3_base_url, "headers": settings.auth_headers(V3)}


def v3_workflow() -> tuple[str, str]:
    """A one-step workflow of the emulator: its uid and its step's uid."""
    hook = _hook()
    workflow = next(w for w in hook.list_workflows() if len(w.steps) == 1)
    return workflow.uid, hook.get_workflow_details(workflow.uid).steps[0].step_uid


def launch_v3_runs(emulator: Any, count: int, finish_at: list[float]) -> list[str]:
    """``count`` runs in ``len(finish_at)`` equal batches; batch k finishes at epoch seconds
    ``finish_at[k]`` whenever it is launched (pending for 1 s, then running)."""
    hook = _hook()
    workflow_uid, step_uid = v3_workflow()
    tag = uuid.uuid4().hex[:8]
    runs: list[str] = []
    batches = len(finish_at)
    for batch, finish in enumerate(finish_at):
        emulator.configure(v3_pending_seconds=1.0, v3_running_seconds=max(finish - time.time() - 1.0, 0.0))
        size = count // batches + (1 if batch < count % batches else 0)
        for _ in range(size):
            answer = hook.launch_workflow(
                workflow_uid,
                inputs=[PROFILE],
                steps=[{"step_uid": step_uid}],
                job_name=f"bench-{tag}-{len(runs)}",
            )
            runs.append(answer.job_uid)
    return runs


def finished_v3_run(emulator: Any, rows: int, page_size: int) -> str:
    """A v3 run that has finished with ``rows`` result rows, ``page_size`` to a page."""
    hook = _hook()
    workflow_uid, step_uid = v3_workflow()
    emulator.configure(
        v3_total_rows=rows, v3_page_size=page_size, v3_pending_seconds=0.0, v3_running_seconds=0.1
    )
    run_uid = hook.launch_workflow(
        workflow_uid, inputs=[PROFILE], steps=[{"step_uid": step_uid}], job_name=f"bench-rows-{rows}"
    ).job_uid
    deadline = time.monotonic() + 30
    while hook.get_workflow_run(run_uid).status not in ("finished", "completed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_uid} did not finish")
        time.sleep(0.1)
    return run_uid
