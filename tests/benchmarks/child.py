"""The measured side of each benchmark, run as ``python child.py MODE PARAMS.json``.

One fresh process per case, so peak RSS belongs to that case alone. It prints one JSON line
(the figures) as its last line of stdout. Baseline modes import only what they use (httpx,
requests, json) before the measured phase; memory is always measured as growth from just
before that phase, so import differences do not count either way.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks.measure import Profile, Ticker, peak_rss_bytes, reset_peak_rss, rss_bytes

V3_FINAL = frozenset({"finished", "completed", "warning", "shutdown", "stopped"})


# -- 2. triggerer scale ---------------------------------------------------------------------


async def _provider_pollers(params: dict[str, Any]) -> tuple[list[Any], Callable[[], Any]]:
    from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

    async def drive(trigger: CaptainDataRunTrigger, offset: float) -> str:
        await asyncio.sleep(offset)
        async for event in trigger.run():
            return str(event.payload["status"])
        return "no event"

    triggers = [
        CaptainDataRunTrigger(run_uid=uid, api_version="v3", poll_interval=params["poll_interval"])
        for uid in params["runs"]
    ]
    return [drive(t, o) for t, o in zip(triggers, params["offsets"], strict=True)], lambda: None


async def _baseline_pollers(params: dict[str, Any]) -> tuple[list[Any], Callable[[], Any]]:
    import httpx

    # The pool bounds the provider's httpx transport had when this baseline was set: the
    # floor is "bare GETs through one shared client", not "a faster pool".
    client = httpx.AsyncClient(
        headers={"User-Agent": "bench-baseline"},
        timeout=httpx.Timeout(60.0, connect=10.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
    )
    headers = params["headers"]
    interval = params["poll_interval"]

    async def poll(uid: str, offset: float) -> str:
        await asyncio.sleep(offset)
        url = f"{params['v3_base_url']}/jobs/{uid}"
        while True:
            response = await client.get(url, headers=headers)
            if response.status_code == 200:
                status = response.json()["status"]
                if status in V3_FINAL:
                    return "success" if status in ("finished", "completed") else status
            await asyncio.sleep(interval)

    return [poll(u, o) for u, o in zip(params["runs"], params["offsets"], strict=True)], client.aclose


async def _triggers(params: dict[str, Any]) -> dict[str, Any]:
    # Imports happen before the measured phase, which starts at the same wall-clock offset
    # from the runs' finish times on both sides (``start_at``), so both poll the same schedule.
    side = params["side"]
    if side == "provider":
        import airflow_provider_captaindata.hooks.captaindata
        import airflow_provider_captaindata.triggers.runs  # noqa: F401
    elif side == "dbt":
        import airflow.providers.dbt.cloud.triggers.dbt  # noqa: F401
    elif side == "aiohttp":
        import aiohttp  # noqa: F401
    if params.get("tls"):
        make = TLS_SIDES[side]
    else:
        make = _provider_pollers if side == "provider" else _baseline_pollers
    import httpx  # noqa: F401

    ticker = Ticker(params.get("tick_s", 0.01))
    ticking = asyncio.create_task(ticker.run())
    late = time.time() - params["start_at"]
    await asyncio.sleep(max(0.5, -late))  # the ticker settles for at least 0.5 s
    ticker.lags.clear()
    reset = reset_peak_rss()
    rss_before = rss_bytes()
    ticker.peak_rss = rss_before
    with Profile(f"triggers-{side}" + (f"-tls-{len(params['runs'])}" if params.get("tls") else "")):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        pollers, close = await make(params)
        tasks = [asyncio.ensure_future(p) for p in pollers]
        _, pending = await asyncio.wait(tasks, timeout=params.get("deadline_s", 300.0))
        if pending:
            for task in pending:
                task.cancel()
            raise RuntimeError(f"{len(pending)} of {len(tasks)} pollers still waiting at the deadline")
        outcomes = [task.result() for task in tasks]
        cpu1, wall1 = time.process_time(), time.perf_counter()
    ticker.stop()
    await ticking
    closing = close()
    if closing is not None:
        await closing
    # The kernel's high-water mark when it could be reset, else the ticker's samples.
    peak = peak_rss_bytes() if reset else ticker.peak_rss
    setup = await _setup_cpu_per_trigger(params) if side == "provider" and not params.get("tls") else 0.0
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return {
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "late_start_s": max(late, 0.0),
        "lags_ms": [round(lag * 1000, 3) for lag in ticker.lags],
        "rss_before": rss_before,
        "peak_rss": peak,
        "outcomes": counts,
        "setup_cpu_s_per_trigger": setup,
    }


async def _setup_cpu_per_trigger(params: dict[str, Any], count: int = 200) -> float:
    """CPU of what each trigger does once, outside the measured phase: build the trigger
    from its kwargs and read the connection (its first ``get_settings``)."""
    from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

    started = time.process_time()
    for uid in params["runs"][:count]:
        trigger = CaptainDataRunTrigger(run_uid=uid, api_version="v3", poll_interval=params["poll_interval"])
        await trigger._hook().get_settings()
    return (time.process_time() - started) / min(count, len(params["runs"]))


# -- 2b. triggerer scale over TLS, all triggers started together -----------------------------


async def _tls_provider(params: dict[str, Any]) -> tuple[list[Any], Callable[[], Any]]:
    from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger

    async def drive(uid: str) -> str:
        trigger = CaptainDataRunTrigger(run_uid=uid, api_version="v3", poll_interval=params["poll_interval"])
        async for event in trigger.run():
            return str(event.payload["status"])
        return "no event"

    return [drive(uid) for uid in params["runs"]], lambda: None


async def _tls_dbt(params: dict[str, Any]) -> tuple[list[Any], Callable[[], Any]]:
    from airflow.providers.dbt.cloud.triggers.dbt import DbtCloudRunJobTrigger

    async def drive(run_id: int) -> str:
        trigger = DbtCloudRunJobTrigger(
            conn_id="dbt_cloud_default",
            run_id=run_id,
            account_id=1,
            end_time=time.time() + params["deadline_s"],
            poll_interval=params["poll_interval"],
        )
        async for event in trigger.run():
            return str(event.payload["status"])
        return "no event"

    return [drive(int(uid)) for uid in params["runs"]], lambda: None


async def _tls_aiohttp(params: dict[str, Any]) -> tuple[list[Any], Callable[[], Any]]:
    import aiohttp

    # The floor: one shared session, no pool limit, no retries, no logging.
    session = aiohttp.ClientSession(
        headers=params["headers"], connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(60)
    )
    interval = params["poll_interval"]

    async def poll(uid: str) -> str:
        url = f"{params['v3_base_url']}/jobs/{uid}"
        while True:
            async with session.get(url) as response:
                if response.status == 200:
                    status = (await response.json())["status"]
                    if status in V3_FINAL:
                        return "success" if status in ("finished", "completed") else status
            await asyncio.sleep(interval)

    return [poll(uid) for uid in params["runs"]], session.close


TLS_SIDES = {"provider": _tls_provider, "dbt": _tls_dbt, "aiohttp": _tls_aiohttp}


# -- 3. results throughput ------------------------------------------------------------------


def _results_provider(params: dict[str, Any]) -> int:
    from airflow_provider_captaindata.operators.workflows import CaptainDataLaunchWorkflowOperator

    # The operator's own collect(): hook.iter_workflow_results into the JsonLinesFile sink.
    operator = CaptainDataLaunchWorkflowOperator(
        task_id="bench_results",
        workflow_uid=params["workflow_uid"],
        inputs=[{"linkedin_profile_url": "https://www.linkedin.com/in/bench"}],
        output_path="file://" + params["out"],
    )
    return int(operator.collect({"ti": _TaskInstance(), "run_id": "bench"}, params["run_uid"])["rows"])


def _results_baseline(params: dict[str, Any]) -> int:
    import requests

    session = requests.Session()
    url: str | None = f"{params['v3_base_url']}/jobs/{params['run_uid']}/results"
    rows = 0
    with open(params["out"], "w", encoding="utf-8") as out:
        while url:
            response = session.get(url, headers=params["headers"], timeout=(10, 60))
            response.raise_for_status()
            page = response.json()
            out.write(
                "".join(
                    json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in page["results"]
                )
            )
            rows += len(page["results"])
            paging = page.get("paging") or {}
            url = paging.get("next") if paging.get("have_next_page") else None
    return rows


def _timed_read(read: Callable[[dict[str, Any]], int], params: dict[str, Any], case: str) -> dict[str, Any]:
    """The rows ``read(params)`` wrote, with the wall time, CPU time and peak memory of that
    read alone (its imports done before)."""
    reset_peak_rss()
    rss_before = rss_bytes()
    with Profile(case):
        started = time.perf_counter()
        cpu0 = time.process_time()
        rows = read(params)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    return {
        "rows": rows,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_before": rss_before,
        "peak_rss": peak_rss_bytes(),
    }


def _results(params: dict[str, Any]) -> dict[str, Any]:
    read = _results_provider if params["side"] == "provider" else _results_baseline
    # Both sides import their code and the HTTP client (requests) before the clock: import
    # cost is benchmark 1's; here it would only blur the rate at 10,000 rows, where the
    # provider's lazy imports (hook, models, tenacity, requests) would be timed and the
    # baseline's would not.
    import requests  # noqa: F401

    if params["side"] == "provider":
        import tenacity  # noqa: F401

        import airflow_provider_captaindata.client.models
        import airflow_provider_captaindata.hooks.captaindata
        import airflow_provider_captaindata.operators.workflows  # noqa: F401
    figures = _timed_read(read, params, f"results-{params['side']}-{params['rows']}")
    return {**figures, "file_bytes": Path(params["out"]).stat().st_size}


# -- 4. live fan-out ------------------------------------------------------------------------


class _TaskInstance:
    """The only part of the task context the fan-out touches."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _timed_execute(operator: Any, case: str) -> dict[str, Any]:
    """The summary and input errors of ``operator.execute``, with its wall and CPU time."""
    ti = _TaskInstance()
    with Profile(case):
        started = time.perf_counter()
        cpu0 = time.process_time()
        summary = operator.execute({"ti": ti, "run_id": "bench"})
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "summary": summary,
        "input_errors": ti.xcom.get("input_errors") or [],
        "max_concurrency": operator.max_concurrency,
    }


def _fanout(params: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator

    inputs = [
        {"linkedin_profile_url": f"https://www.linkedin.com/in/bench-{i:05d}"}
        for i in range(params["inputs"])
    ]
    operator = CaptainDataRunActionOperator(
        task_id="bench_fanout",
        action=params["action"],
        inputs=inputs,
        output_path=params.get("output_path") or "file://" + params["out"],
        on_input_error="continue",  # count failures instead of stopping at the first batch error
        **({"max_concurrency": params["max_concurrency"]} if params.get("max_concurrency") else {}),
    )
    return _timed_execute(operator, "fanout")


# -- 6. v1: enrichment at the plan's rate, and a search read against a bare loop -------------


def _v1_enrich(params: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_captaindata.operators.v1_enrich import CaptainDataEnrichPeopleOperator

    inputs = [f"https://www.linkedin.com/in/bench-{i:05d}" for i in range(params["inputs"])]
    operator = CaptainDataEnrichPeopleOperator(
        task_id="bench_v1_enrich",
        inputs=inputs,
        output_path="file://" + params["out"],
        credit_check=False,
        **({"max_concurrency": params["max_concurrency"]} if params.get("max_concurrency") else {}),
    )
    return _timed_execute(operator, "v1-enrich")


def _v1_search_provider(params: dict[str, Any]) -> int:
    from airflow_provider_captaindata.client.v1 import V1Client

    # The reading: the client's cursor pages, written as the bare loop writes them (a plain
    # file); what Airflow's object storage adds is in the operator case.
    client = V1Client(
        params["headers"]["X-API-Key"], base_url=params["v1_base_url"], rate_limit_per_second=1000
    )
    rows = 0
    with open(params["out"], "w", encoding="utf-8") as out:
        for page in client.read(client.pager("search_people", params["results"], query=params["query"])):
            out.write("".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in page))
            rows += len(page)
    return rows


def _v1_search_operator(params: dict[str, Any]) -> int:
    from airflow_provider_captaindata.operators.v1_search import CaptainDataSearchPeopleOperator

    # The whole task: connection, GET /quotas before and after, per-page records beside the file.
    operator = CaptainDataSearchPeopleOperator(
        task_id="bench_v1_search",
        query=params["query"],
        max_results=params["results"],
        output_path="file://" + params["out"],
        credit_check=False,
    )
    return int(operator.execute({"ti": _TaskInstance(), "run_id": "bench"})["rows"])


def _v1_search_baseline(params: dict[str, Any]) -> int:
    import requests

    session = requests.Session()
    url: str | None = f"{params['v1_base_url']}/people/search"
    query: dict[str, str] | None = {"query": params["query"]}
    rows = 0
    with open(params["out"], "w", encoding="utf-8") as out:
        while url and rows < params["results"]:
            response = session.get(url, params=query, headers=params["headers"], timeout=(10, 60))
            response.raise_for_status()
            page = response.json()[: params["results"] - rows]
            out.write("".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in page))
            rows += len(page)
            url, query = response.headers.get("X-Pagination-Next"), None
            if url == "null":
                url = None
    return rows


def _v1_search(params: dict[str, Any]) -> dict[str, Any]:
    read = {"provider": _v1_search_provider, "operator": _v1_search_operator}.get(
        params["side"], _v1_search_baseline
    )
    import requests  # noqa: F401  (as in _results: imports are not what is timed)

    if params["side"] == "provider":  # the client alone: no Airflow in the process, as in a script
        import airflow_provider_captaindata.client.v1
    elif params["side"] == "operator":
        import airflow_provider_captaindata.client.v1
        import airflow_provider_captaindata.hooks.captaindata
        import airflow_provider_captaindata.operators.v1_search
        import airflow_provider_captaindata.results  # noqa: F401
    return _timed_read(read, params, f"v1-search-{params['side']}-{params['results']}")


def main() -> None:
    mode, params_file = sys.argv[1], Path(sys.argv[2])
    params = json.loads(params_file.read_text())
    params_file.unlink()
    if mode == "triggers":
        result = asyncio.run(_triggers(params))
    elif mode == "results":
        result = _results(params)
    elif mode == "fanout":
        result = _fanout(params)
    elif mode == "v1_enrich":
        result = _v1_enrich(params)
    elif mode == "v1_search":
        result = _v1_search(params)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
