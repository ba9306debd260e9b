"""The v1 operators over real HTTP against the emulator: searches up to max_results, find and
enrich many inputs in input order with a per-input error report, results to XCom or a file,
the credit check and credits spent, and retries that pay again for nothing they have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_captaindata.emulator import EmulatorClient
from airflow_provider_captaindata.exceptions import CaptainDataConfigError, CaptainDataInputErrors
from airflow_provider_captaindata.operators.v1_enrich import (
    CaptainDataEnrichCompaniesOperator,
    CaptainDataEnrichPeopleOperator,
    CaptainDataFindCompaniesOperator,
)
from airflow_provider_captaindata.operators.v1_search import (
    CaptainDataCompanyEmployeesOperator,
    CaptainDataSearchPeopleOperator,
)
from tests.airflow_helpers import make_dag, run_dag, task_states, xcom
from tests.test_actions_writes import RetriedTI, StateStore

pytestmark = pytest.mark.usefixtures("airflow_db")

QUERY = '(keywords:"Data Engineer")'
LI = "https://www.linkedin.com/in/"


def profiles(count: int) -> list[str]:
    return [f"{LI}person-{i:05d}" for i in range(count)]


def enrich_calls(emu: EmulatorClient) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in emu.requests("GET", "/v1/people/enrich"):
        url = record["query"]["li_profile_url"]
        counts[url] = counts.get(url, 0) + 1
    return counts


@pytest.fixture
def emu(captaindata_emulator: EmulatorClient, monkeypatch: pytest.MonkeyPatch) -> EmulatorClient:
    conn = captaindata_emulator.connection_json()
    conn.setdefault("extra", {}).update(api_version="v1", rate_limit_per_second=1000)
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    return captaindata_emulator


def test_search_enrich_and_employees_in_a_dag(emu: EmulatorClient, tmp_path: Path) -> None:
    out = tmp_path / "people.jsonl"
    with make_dag("v1_pipeline") as dag:
        search = CaptainDataSearchPeopleOperator(task_id="search", query=QUERY, max_results=30)
        enrich = CaptainDataEnrichPeopleOperator(
            task_id="enrich", inputs=search.output, output_path=f"file://{out}", full_enrich=True
        )
        find = CaptainDataFindCompaniesOperator(task_id="find", inputs=["Acme Analytics", "Datanest"])
        employees = CaptainDataCompanyEmployeesOperator(
            task_id="employees", company_uid="{{ ti.xcom_pull(task_ids='find')[0]['uid'] }}", max_results=12
        )
        search >> enrich
        find >> employees
    run = run_dag(dag)
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    people = xcom(run, "search")
    assert len(people) == 30
    summary = xcom(run, "enrich")
    assert (summary["rows"], summary["failed"], summary["inputs"]) == (30, 0, 30)
    assert summary["credits_spent"] == 60  # full_enrich costs 2 a profile, as /quotas says
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["li_profile_url"] for r in lines] == [p["li_profile_url"] for p in people]  # input order
    assert xcom(run, "search", key="summary")["credits_spent"] == 2 + 50  # 2 pages, 25 results each
    assert len(xcom(run, "employees")) == 12
    assert emu.requests("GET", "/v1/companies/*/employees")[0]["path"].endswith(
        xcom(run, "find")[0]["uid"] + "/employees"
    )


def test_enrich_reads_an_upstream_results_file_and_maps(emu: EmulatorClient, tmp_path: Path) -> None:
    out = tmp_path / "companies.jsonl"
    with make_dag("v1_mapped") as dag:
        search = CaptainDataSearchPeopleOperator(
            task_id="search", query=QUERY, max_results=5, output_path=f"file://{tmp_path}/search.jsonl"
        )
        enrich = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=search.output)
        CaptainDataEnrichCompaniesOperator.partial(task_id="companies", output_path=f"file://{out}").expand(
            inputs=[["https://www.linkedin.com/company/acme"], ["https://www.linkedin.com/company/datanest"]]
        )
        search >> enrich
    run = run_dag(dag)
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    assert len(xcom(run, "enrich")) == 5


def test_failed_inputs_are_reported_and_the_rest_kept_in_order(emu: EmulatorClient) -> None:
    emu.add_fault("GET", "/v1/people/enrich", status=424, times=None, match_body="person-00002")
    ti = RetriedTI(1)
    op = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=profiles(5))
    rows = op.execute({"ti": ti, "run_id": "r"})
    assert [r["li_profile_url"] for r in rows] == [p for i, p in enumerate(profiles(5)) if i != 2]
    (error,) = ti.pushed["input_errors"]
    assert (error["input_index"], error["status_code"], error["error_label"]) == (2, 424, "ACTION_FAILED")
    assert error["error_ref"] and "data" in error
    assert enrich_calls(emu)[profiles(5)[2]] == 3  # 424 tried three times in all
    failing = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=profiles(5), on_input_error="fail")
    with pytest.raises(CaptainDataInputErrors, match="input 2"):
        failing.execute({"ti": RetriedTI(1), "run_id": "r"})


def test_a_bad_input_fails_before_any_call(emu: EmulatorClient) -> None:
    inputs = [*profiles(3), "https://www.linkedin.com/company/acme"]
    op = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=inputs)
    with pytest.raises(CaptainDataConfigError, match=r"inputs\[3\].*li_profile_url"):
        op.execute({"ti": RetriedTI(1), "run_id": "r"})
    search = CaptainDataSearchPeopleOperator(task_id="s", query=QUERY, max_results=0)
    with pytest.raises(CaptainDataConfigError, match="max_results"):
        search.execute({"ti": RetriedTI(1), "run_id": "r"})
    assert emu.requests() == []


def test_the_credit_check_refuses_to_start(emu: EmulatorClient) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    emu.configure(v4_credits=150)
    op = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=profiles(200))
    with pytest.raises(AirflowFailException, match="exceeds the 150"):
        op.execute({"ti": RetriedTI(1), "run_id": "r"})
    assert [r["path"] for r in emu.requests()] == ["/v1/quotas"]
    # Under the threshold the check is off by default; credit_check=True forces it.
    small = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=profiles(3), credit_check=True)
    emu.configure(v4_credits=2)
    with pytest.raises(AirflowFailException, match="credits left"):
        small.execute({"ti": RetriedTI(1), "run_id": "r"})


class WorkerDied(BaseException):
    pass


def test_a_retry_after_a_worker_death_enriches_no_input_twice(
    emu: EmulatorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_captaindata.client.v1 import AsyncV1Client

    inputs = profiles(100)
    store = StateStore()
    original = AsyncV1Client.call

    async def dies_halfway(self: Any, name: str, **params: Any) -> Any:
        if params.get("li_profile_url") == inputs[50]:
            raise WorkerDied
        return await original(self, name, **params)

    kwargs: dict[str, Any] = {"task_id": "enrich", "inputs": inputs, "max_concurrency": 1}
    with monkeypatch.context() as patch:
        patch.setattr(AsyncV1Client, "call", dies_halfway)
        with pytest.raises(WorkerDied):
            CaptainDataEnrichPeopleOperator(**kwargs).execute(
                {"ti": RetriedTI(1), "run_id": "r", "task_state_store": store}
            )
    assert len(enrich_calls(emu)) == 50
    ti = RetriedTI(2)
    rows = CaptainDataEnrichPeopleOperator(**kwargs).execute(
        {"ti": ti, "run_id": "r", "task_state_store": store}
    )
    assert [r["li_profile_url"] for r in rows] == inputs
    assert enrich_calls(emu) == {url: 1 for url in inputs}  # counted at the emulator
    assert ti.pushed["summary"]["reused"] == 50


@pytest.mark.parametrize(("fresh", "records_in"), [(True, "store"), (False, "store"), (True, "file")])
def test_a_retried_search_goes_on_from_its_saved_cursor(
    emu: EmulatorClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh: bool, records_in: str
) -> None:
    """A saved cursor younger than a day is used; an older one is not sent: page 1 is read
    again and the rows the first try had are skipped, none given twice."""
    from airflow_provider_captaindata.client import v1
    from airflow_provider_captaindata.client.v1 import V1Client

    if not fresh:
        monkeypatch.setattr(v1, "CURSOR_LIFETIME_SECONDS", 0)

    store = StateStore()
    original = V1Client._send
    sent: list[str] = []

    def dies_on_page_3(self: Any, url: str, params: Any) -> Any:
        if "/people/search" in url:
            sent.append(url)
        if len(sent) == 3:
            raise WorkerDied
        return original(self, url, params)

    kwargs: dict[str, Any] = {"task_id": "search", "query": QUERY, "max_results": 60}
    extra: dict[str, Any] = {"task_state_store": store}
    if records_in == "file":  # Airflow before 3.3: the records live beside output_path
        kwargs["output_path"] = f"file://{tmp_path}/people.jsonl"
        extra = {}
    emu.configure(v1_page_size=10)
    with monkeypatch.context() as patch:
        patch.setattr(V1Client, "_send", dies_on_page_3)
        with pytest.raises(WorkerDied):
            CaptainDataSearchPeopleOperator(**kwargs).execute({"ti": RetriedTI(1), "run_id": "r", **extra})
    assert len(emu.requests("GET", "/v1/people/search")) == 2
    result = CaptainDataSearchPeopleOperator(**kwargs).execute({"ti": RetriedTI(2), "run_id": "r", **extra})
    if records_in == "file":
        assert result["rows"] == 60
        rows = [json.loads(line) for line in (tmp_path / "people.jsonl").read_text().splitlines()]
    else:
        rows = result
    assert len(rows) == 60 and len({r["uid"] for r in rows}) == 60
    searches = emu.requests("GET", "/v1/people/search")
    if fresh:
        assert len(searches) == 6 and all("cursor" in r["query"] for r in searches[2:])  # page 1 never again
    else:
        assert len(searches) == 8 and "cursor" not in searches[2]["query"]
