"""The acting scenario: a live fan-out of LinkedIn messages run by ``dag.test()`` (mapped or
not, retries, a failure after ``execute()`` returned, XCom or file outputs), under faults on
each input's calls and a Captain Data clock skew."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from airflow_provider_captaindata.exceptions import OUTCOME_UNKNOWN, CaptainDataConfigError
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from tests.invariants.harness import Kill, check, install, later, run_dag_through_kills, worker_dies
from tests.invariants.scenarios import Scenario

MESSAGE = "linkedin-message-profile"
LIVE_PATH = f"/v4/actions/{MESSAGE}/run/live"
URL = "https://www.linkedin.com/in/{}"


class FailsAfterExecute(CaptainDataRunActionOperator):
    """Its first try fails once ``execute()`` has returned (as a failed XCom push or a worker
    dying before Airflow records the success would)."""

    failed: ClassVar[set[str]] = set()

    def post_execute(self, context: Any, result: Any = None) -> None:
        key = f"{self.dag_id}.{self.task_id}.{context['ti'].map_index}"
        if key not in self.failed:
            self.failed.add(key)
            raise RuntimeError("the try fails after execute() returned (harness)")


def run_acting(scenario: Scenario, emulator: Any, folder: Path, dag_id: str) -> None:
    install(emulator, scenario, "POST", LIVE_PATH)
    groups = message_groups(scenario)
    try:
        dag = acting_dag(scenario, folder, dag_id, groups)
    except CaptainDataConfigError as exc:
        # bad input refused when the DAG is parsed: the error names the parameter, nothing is sent
        check(scenario.typo and "mesage" in str(exc), "a DAG was refused", str(exc))
        check(emulator.requests("POST", LIVE_PATH) == [], "a refused DAG reached the API", scenario.seed)
        return
    with worker_dies(scenario.kill, scenario.kill_after) as kill:
        dag_run = run_dag_through_kills(dag)
    unsure = unanswered_at_death(groups, kill)
    with later(scenario.clear_after if scenario.clear else 0.0):
        if scenario.clear:
            from tests.airflow_helpers import rerun_cleared

            if scenario.clear == "new":
                groups = message_groups(scenario, first=10_000)
            dag_run = rerun_cleared(acting_dag(scenario, folder, dag_id, groups), dag_run)
        check_acting(scenario, emulator, dag_run, groups, unsure)


def message_groups(scenario: Scenario, first: int = 0) -> list[list[dict[str, Any]]]:
    """The inputs of each task instance (two when mapped), profiles ``first`` onwards."""
    return [
        [
            {"linkedin_profile_url": URL.format(f"person-{first + g * scenario.inputs + i:05d}")}
            for i in range(scenario.inputs)
        ]
        for g in range(2 if scenario.mapped else 1)
    ]


def profile_of(body: Any) -> str:
    """The profile a live call's body messages."""
    return str(((body or {}).get("input") or {}).get("linkedin_profile_url"))


def acted_on(posts: list[dict[str, Any]]) -> Counter[str]:
    """The profiles the API acted on (a 2xx ``api_status``: what it did, whatever the client
    saw), counted."""
    return Counter(profile_of(p.get("body")) for p in posts if 200 <= (p.get("api_status") or 0) < 300)


def unanswered_at_death(groups: list[list[dict[str, Any]]], kill: Kill) -> set[str]:
    """The inputs of the try a worker died in whose calls had no answer yet: each may have been
    under way (its record written, its call in flight or about to be), so its outcome is unknown."""
    if not kill.fired:
        return set()

    dying = {profile_of(body) for body in kill.in_flight}
    answered = {profile_of(body) for body in kill.answered}
    tries = [{item["linkedin_profile_url"] for item in group} for group in groups]
    return {u for inputs in tries if inputs & dying for u in inputs - answered}


def acting_dag(scenario: Scenario, folder: Path, dag_id: str, groups: list[list[dict[str, Any]]]) -> Any:
    from tests.airflow_helpers import make_dag

    kwargs: dict[str, Any] = {
        "task_id": "message",
        "action": MESSAGE,
        "on_input_error": "continue",
        "retries": scenario.retries,
        "retry_delay": timedelta(0),
    }
    if scenario.output == "file":
        kwargs["output_path"] = str(folder / "messages.jsonl")
    elif scenario.output == "shared":
        kwargs["output_path"] = str(folder / "{{ run_id }}.jsonl")  # the docs' own example
    if scenario.typo:
        kwargs["parameters"] = {"mesage": "hello"}  # "message" misspelt
    operator = FailsAfterExecute if scenario.fail_after_execute else CaptainDataRunActionOperator
    with make_dag(dag_id) as dag:
        if scenario.mapped:
            operator.partial(**kwargs).expand(inputs=groups)
        else:
            operator(inputs=groups[0], **kwargs)
    return dag


def check_acting(
    scenario: Scenario, emulator: Any, dag_run: Any, groups: list[list[dict[str, Any]]], unsure: set[str]
) -> None:
    """``groups``: the inputs of the DAG run's last run (after a clear with new inputs, those);
    ``unsure``: inputs whose outcome a worker's death left unknown."""
    posts = emulator.requests("POST", LIVE_PATH)
    acted = acted_on(posts)
    # inputs for which the client did not get the API's own answer
    unanswered = [p for p in posts if p.get("fault") or p.get("status") is None]
    ambiguous = unsure | {profile_of(p.get("body")) for p in unanswered}
    if scenario.typo:
        # bad input: refused before any call, the task failed
        check(posts == [], "a misspelt parameter reached the API", len(posts))
        check(
            all(str(ti.state) == "failed" for ti in dag_run.get_task_instances()),
            "a task with a misspelt parameter did not fail",
            [str(ti.state) for ti in dag_run.get_task_instances()],
        )
        return
    # 1. each acting input acted on at most once
    check(all(n <= 1 for n in acted.values()), "an acting input acted on more than once", dict(acted))

    # 3b. no page link followed twice for one reading of an input (a cycling X-Pagination-Next:
    # credits, rows); a task retry that sends the input again reads its pages again
    answered = [
        (profile_of(p.get("body")), (p.get("query") or {}).get("page"))
        for p in posts
        if p.get("status") == 200
    ]
    readings = Counter(profile for profile, page in answered if not page)
    pages = Counter((profile, page) for profile, page in answered if page)
    check(
        all(n <= readings[url] for (url, _), n in pages.items()),
        "a page link was followed twice in one reading of an input (a paging loop)",
        {f"{url} page {page}": [n, readings[url]] for (url, page), n in pages.items() if n > readings[url]},
    )
    tis = {ti.map_index: ti for ti in dag_run.get_task_instances()}
    paths: list[str] = []
    for map_index, ti in sorted(tis.items()):
        inputs = groups[max(map_index, 0)]
        if str(ti.state) != "success":
            continue
        value = ti.xcom_pull(task_ids="message", key="return_value", map_indexes=map_index)
        errors = ti.xcom_pull(task_ids="message", key="input_errors", map_indexes=map_index) or []
        if scenario.output == "xcom":
            rows = list(value or [])
        else:
            check(isinstance(value, dict) and "path" in value, "a file output reports its path", value)
            paths.append(value["path"])
            rows = [
                json.loads(line)
                for line in Path(value["path"].removeprefix("file://")).read_text().splitlines()
            ]
        got = Counter(r["custom_data"]["airflow_input_index"] for r in rows)
        failed = {e["input_index"]: e for e in errors}
        for index, item in enumerate(inputs):
            url = item["linkedin_profile_url"]
            # 3. each result row exactly once (or an error for that input, never both)
            check(
                got[index] + (index in failed) == 1,
                "an input's row is not in the outputs exactly once",
                {"map_index": map_index, "input": url, "rows": got[index], "error": failed.get(index)},
            )
            # 3c. a row is this input's answer (never another input's, e.g. from before a clear)
            check(
                not got[index] or acted[url] == 1,
                "a row for an input the API never acted on",
                {"map_index": map_index, "input": url},
            )
            if index in failed and acted[url]:
                # 1b. an input that may have acted is reported OUTCOME_UNKNOWN, never as refused
                check(
                    failed[index].get("error_label") == OUTCOME_UNKNOWN,
                    "an input that acted is reported as a definite failure",
                    {"input": url, "error": failed[index]},
                )
            if index in failed and failed[index].get("error_label") == OUTCOME_UNKNOWN:
                check(
                    url in ambiguous,
                    "OUTCOME_UNKNOWN for an input whose every answer was clear",
                    {"input": url},
                )
    # 4. no output object written by two instances
    check(len(paths) == len(set(paths)), "two task instances wrote one output object", paths)
