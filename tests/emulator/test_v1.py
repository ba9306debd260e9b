"""The emulator's v1 API over real HTTP: shapes from the v1 document, cursor paging,
expiring cursors, per-tier rate limits, credits, 424 faults and query checks."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest

from airflow_provider_captaindata.client.catalog import v1 as spec
from airflow_provider_captaindata.emulator import EmulatorClient
from tests.emulator.test_catalog import REPO

V1_DOCUMENT = REPO.parent / "shared" / "reference" / "captaindata-v1-openapi.json"
QUERY = '(keywords:"Data Engineer",geo:(Paris))'
LI = "https://www.linkedin.com/"
V1_ERROR_KEYS = {"error_label", "error_scope", "error_ref", "message", "status_code", "params", "data"}


@pytest.fixture
def v1(emu: EmulatorClient) -> Any:
    with httpx.Client(base_url=emu.v1_url, headers={"X-API-Key": emu.api_key}, timeout=10) as client:
        yield client


def valid(operation: str, body: Any) -> None:
    jsonschema.validate(body, spec.v1_operation(operation)["response"])


def refused(answer: httpx.Response, field: str, status: int = 400) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()
    assert answer.status_code == status, body
    assert set(body) == V1_ERROR_KEYS
    assert body["params"] == {"field": field}, body
    return body


def read_all(v1: httpx.Client, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    answer = v1.get(path, params=params)
    pages = 1
    while True:
        assert answer.status_code == 200, answer.text
        rows.extend(answer.json())
        following = answer.headers.get("X-Pagination-Next")
        if not following or following == "null":
            return rows, pages
        answer = v1.get(following)
        pages += 1


def test_every_answer_validates_against_the_document(v1: httpx.Client) -> None:
    people, _ = read_all(v1, "/people/search", {"query": QUERY})
    valid(spec.PEOPLE_SEARCH, people)
    companies, _ = read_all(v1, "/companies/search", {"query": "(industry:(4))"})
    valid(spec.COMPANIES_SEARCH, companies)
    found = v1.get("/people/find", params={"full_name": "Alice Martin", "company_name": "Acme"}).json()
    valid(spec.PEOPLE_FIND, found)
    company = v1.get("/companies/find", params={"company_name": "Acme Analytics"}).json()
    valid(spec.COMPANIES_FIND, company)
    assert isinstance(company["li_company_id"], str)
    # What one answer returns is accepted back as an input (find -> enrich -> employees).
    profile = v1.get(
        "/people/enrich", params={"li_profile_url": found["li_profile_url"], "full_enrich": "true"}
    )
    valid(spec.PEOPLE_ENRICH, profile.json())
    assert profile.json()["li_profile_url"] == found["li_profile_url"] and profile.json()["experiences"]
    enriched = v1.get("/companies/enrich", params={"li_company_url": company["li_company_url"]}).json()
    valid(spec.COMPANIES_ENRICH, enriched)
    assert isinstance(enriched["li_company_id"], int | float)
    for company_uid in (company["uid"], company["li_company_id"], enriched["uid"]):
        employees, _ = read_all(v1, f"/companies/{company_uid}/employees", {})
        valid(spec.COMPANY_EMPLOYEES, employees)
        assert {"tenure_start", "sn_company_id", "summary"} <= set(employees[0])
    for row in people[:5]:
        valid(
            spec.PEOPLE_ENRICH,
            v1.get("/people/enrich", params={"li_profile_url": row["li_profile_url"]}).json(),
        )
    for row in companies[:5]:
        assert row["li_company_url"].startswith(LI)
        assert v1.get(f"/companies/{row['uid']}/employees").status_code == 200
        assert (
            v1.get("/companies/enrich", params={"li_company_url": row["li_company_url"]}).status_code == 200
        )
    quotas = v1.get("/quotas").json()
    valid(spec.QUOTAS, quotas)


def test_fields_vary_between_records(v1: httpx.Client) -> None:
    people, _ = read_all(v1, "/people/search", {"query": QUERY})
    assert len({frozenset(row) for row in people}) > 1
    assert all(row["li_profile_url"].startswith(LI + "in/") for row in people)


@pytest.mark.parametrize("style", ["absent", "empty", "null"])
def test_cursor_paging_follows_the_header_to_the_end(
    emu: EmulatorClient, v1: httpx.Client, style: str
) -> None:
    emu.configure(v1_search_total_results=60, v1_last_page_header=style)
    rows, pages = read_all(v1, "/people/search", {"query": QUERY})
    assert pages == 3 and len(rows) == 60 and len({row["uid"] for row in rows}) == 60
    employees, pages = read_all(v1, f"/companies/{rows[0]['uid']}/employees", {"query": "(title:CTO)"})
    assert pages == 6 and len(employees) == 60


def test_page_and_page_size_are_accepted_and_ignored(v1: httpx.Client) -> None:
    plain = v1.get("/people/search", params={"query": QUERY}).json()
    with_both = v1.get("/people/search", params={"query": QUERY, "page": 3, "page_size": 7}).json()
    assert with_both == plain and len(plain) == 25
    assert v1.get("/companies/123/employees", params={"page": "x", "page_size": 999}).status_code == 200


def test_cursors_expire_on_the_configured_clock(emu: EmulatorClient, v1: httpx.Client) -> None:
    emu.configure(v1_cursor_ttl_seconds=0.3)
    following = v1.get("/people/search", params={"query": QUERY}).headers["X-Pagination-Next"]
    assert v1.get(following).status_code == 200
    time.sleep(0.4)
    body = refused(v1.get(following), "cursor")
    assert body["error_label"] == "CURSOR_EXPIRED"


def test_a_cursor_is_bound_to_its_search(v1: httpx.Client) -> None:
    following = httpx.URL(v1.get("/people/search", params={"query": QUERY}).headers["X-Pagination-Next"])
    cursor = following.params["cursor"]
    other = v1.get("/people/search", params={"query": "(keywords:sales)", "cursor": cursor})
    assert refused(other, "cursor")["error_label"] == "INVALID_CURSOR"
    assert refused(v1.get("/people/search", params={"query": QUERY, "cursor": "garbage"}), "cursor")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/people/search", {}, "query"),
        ("/people/search", {"query": quote(QUERY)}, "query"),  # encoded twice by the caller
        ("/companies/search", {"query": ""}, "query"),
        ("/people/find", {"company_name": "Acme"}, "full_name"),
        ("/companies/find", {}, "company_name"),
        ("/people/enrich", {"li_profile_url": "https://www.linkedin.com/company/acme"}, "li_profile_url"),
        ("/people/enrich", {"li_profile_url": "https://evil.example/in/alice"}, "li_profile_url"),
        ("/people/enrich", {"li_profile_url": LI + "in/alice", "full_enrich": "maybe"}, "full_enrich"),
        ("/companies/enrich", {"li_company_url": LI + "in/alice"}, "li_company_url"),
        ("/companies/not-a-uid/employees", {}, "company_uid"),
    ],
)
def test_queries_are_checked_against_the_document(
    v1: httpx.Client, path: str, params: dict[str, Any], field: str
) -> None:
    refused(v1.get(path, params=params), field)


def test_the_key_is_required(emu: EmulatorClient) -> None:
    with httpx.Client(base_url=emu.v1_url, timeout=10) as anonymous:
        for headers in ({}, {"X-API-Key": "wrong"}):
            answer = anonymous.get("/quotas", headers=headers)
            assert answer.status_code == 401 and set(answer.json()) == V1_ERROR_KEYS


def test_the_plan_tier_limits_every_data_call_and_quotas_on_its_own(
    emu: EmulatorClient, v1: httpx.Client
) -> None:
    emu.configure(v1_plan="Trial", v1_quotas_per_minute=2)
    assert v1.get("/people/find", params={"full_name": "Alice Martin"}).status_code == 200
    limited = v1.get("/companies/find", params={"company_name": "Acme"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error_label"] == "RATE_LIMIT_EXCEEDED"
    quotas = [v1.get("/quotas") for _ in range(3)]
    assert [answer.status_code for answer in quotas] == [200, 200, 429]
    assert quotas[0].json()["plan_name"] == "Trial"


def test_credits_decrease_as_results_are_served(emu: EmulatorClient, v1: httpx.Client) -> None:
    before = v1.get("/quotas").json()
    v1.get("/people/search", params={"query": QUERY})  # 1 a request + 1 a result (25)
    v1.get("/people/enrich", params={"li_profile_url": LI + "in/alice", "full_enrich": "true"})  # 2
    after = v1.get("/quotas").json()
    assert before["credits_left"] - after["credits_left"] == 28
    assert after["credits_used"] - before["credits_used"] == 28


def test_a_424_fault_hits_one_input(emu: EmulatorClient, v1: httpx.Client) -> None:
    emu.add_fault("GET", "/v1/people/enrich", status=424, times=None, match_body="in/broken")
    assert v1.get("/people/enrich", params={"li_profile_url": LI + "in/fine"}).status_code == 200
    failed = v1.get("/people/enrich", params={"li_profile_url": LI + "in/broken"})
    assert failed.status_code == 424 and set(failed.json()) == V1_ERROR_KEYS
    assert emu.requests("GET", "/v1/people/enrich")[-1]["query"] == {"li_profile_url": LI + "in/broken"}


@pytest.mark.skipif(not V1_DOCUMENT.exists(), reason="the v1 OpenAPI document is not beside the repository")
def test_committed_v1_table_matches_the_document() -> None:
    script = REPO / "scripts" / "derive_v1_api.py"
    result = subprocess.run(
        [sys.executable, str(script), str(V1_DOCUMENT), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
