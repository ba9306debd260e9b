"""The v1 client over real HTTP against the emulator: the eight endpoints sync and async,
cursor paging (expiry mid-search, loops, any page size, max_results), checks before any call,
the Sales Navigator query decoded once, 424 and 429 handling, and errors as the API gives them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.client.v1 import AsyncV1Client, V1Client
from airflow_provider_captaindata.emulator import EmulatorClient
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataPagingError,
)

QUERY = '(keywords:"Data Engineer",geo:(Paris))'
FAST = RetryPolicy(backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
def client(captaindata_emulator: EmulatorClient) -> Any:
    c = V1Client(
        captaindata_emulator.api_key,
        base_url=captaindata_emulator.v1_url,
        rate_limit_per_second=1000,
        policy=FAST,
    )
    yield c
    c.close()


def aclient(emu: EmulatorClient, rate: float = 1000) -> AsyncV1Client:
    return AsyncV1Client(emu.api_key, base_url=emu.v1_url, rate_limit_per_second=rate, policy=FAST)


def searches(emu: EmulatorClient) -> list[dict[str, Any]]:
    return emu.requests("GET", "/v1/people/search")


def test_the_eight_endpoints_chain_sync(captaindata_emulator: EmulatorClient, client: V1Client) -> None:
    people = list(client.search_people(QUERY))
    assert len(people) == 60
    person = client.find_person("Alice Martin", "Acme Analytics")
    profile = client.enrich_person(person["li_profile_url"], full_enrich=True)
    assert profile["li_profile_url"] == person["li_profile_url"] and "experiences" in profile
    company = client.find_company("Acme Analytics")
    assert client.enrich_company(company["li_company_url"])["li_company_url"] == company["li_company_url"]
    companies = list(client.search_companies("(industry:(4))", max_results=30))
    assert len(companies) == 30
    employees = list(client.company_employees(company["uid"], query="(title:CTO)"))
    assert len(employees) == 60 and "tenure_start" in employees[0]  # fields the schema lacks pass through
    assert client.quotas()["credits_left"] < client.quotas()["credits_max"]


def test_the_eight_endpoints_chain_async(captaindata_emulator: EmulatorClient) -> None:
    async def scenario() -> tuple[int, int, dict[str, Any]]:
        c = aclient(captaindata_emulator)
        try:
            people = [row async for row in c.search_people(QUERY, max_results=40)]
            person = await c.find_person("Alice Martin")
            await c.enrich_person(person["li_profile_url"])
            company = await c.find_company("Acme")
            await c.enrich_company(company["li_company_url"])
            companies = [row async for row in c.search_companies("(industry:(4))")]
            employees = [row async for row in c.company_employees(company["li_company_id"])]
            assert len(employees) == 60
            return len(people), len(companies), await c.quotas()
        finally:
            await c.aclose()

    people, companies, quotas = asyncio.run(scenario())
    assert (people, companies) == (40, 60) and quotas["credits_used"] > 0


@pytest.mark.parametrize("style", ["absent", "empty", "null"])
def test_paging_needs_no_page_size_and_stops_on_the_last_header(
    captaindata_emulator: EmulatorClient, client: V1Client, style: str
) -> None:
    captaindata_emulator.configure(v1_page_size=7, v1_last_page_header=style)
    rows = list(client.search_people(QUERY))
    assert len(rows) == 60 and len({r["uid"] for r in rows}) == 60
    assert len(searches(captaindata_emulator)) == 9  # ceil(60 / 7): no extra call past the end
    for record in searches(captaindata_emulator):
        assert "page" not in record["query"] and "page_size" not in record["query"]


def test_max_results_stops_reading(captaindata_emulator: EmulatorClient, client: V1Client) -> None:
    assert len(list(client.search_people(QUERY, max_results=26))) == 26
    assert len(searches(captaindata_emulator)) == 2


def test_an_expired_cursor_restarts_without_duplicating_a_row(
    captaindata_emulator: EmulatorClient, client: V1Client
) -> None:
    expected = list(client.search_people(QUERY))
    captaindata_emulator.clear_requests()
    captaindata_emulator.configure(v1_cursor_ttl_seconds=0.3)
    reading = client.search_people(QUERY)
    got = [next(reading) for _ in range(30)]  # page 1 and the start of page 2
    time.sleep(0.4)  # page 3's cursor, handed out with page 2, is now too old
    got.extend(reading)
    assert got == expected
    statuses = [(("cursor" in r["query"]), r["status"]) for r in searches(captaindata_emulator)]
    assert statuses == [(False, 200), (True, 200), (True, 400), (False, 200), (True, 200), (True, 200)]


def test_async_reading_restarts_too(captaindata_emulator: EmulatorClient) -> None:
    captaindata_emulator.add_fault(
        "GET", "/v1/people/search", status=400, error_label="CURSOR_EXPIRED", match_body="cursor=", times=1
    )

    async def read() -> list[dict[str, Any]]:
        c = aclient(captaindata_emulator)
        try:
            return [row async for row in c.search_people(QUERY)]
        finally:
            await c.aclose()

    rows = asyncio.run(read())
    assert len(rows) == 60 and len({r["uid"] for r in rows}) == 60


def test_a_paging_loop_is_refused(captaindata_emulator: EmulatorClient, client: V1Client) -> None:
    again = f"{captaindata_emulator.v1_url}/people/search?query=x&cursor=AAAA"
    captaindata_emulator.add_fault(
        "GET", "/v1/people/search", body=[{"uid": "u"}], headers={"X-Pagination-Next": again},
        match_body="cursor=", times=None,
    )  # fmt: skip
    with pytest.raises(CaptainDataPagingError):
        list(client.search_people(QUERY))
    assert len(searches(captaindata_emulator)) == 3


def test_the_pasted_query_is_decoded_once(captaindata_emulator: EmulatorClient, client: V1Client) -> None:
    assert len(list(client.search_people(quote(QUERY), max_results=5))) == 5
    assert searches(captaindata_emulator)[0]["query"]["query"] == QUERY


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda c: c.enrich_person("https://evil.example/in/alice"), "li_profile_url"),
        (lambda c: c.enrich_person("https://www.linkedin.com/company/acme"), "li_profile_url"),
        (lambda c: c.enrich_company("https://www.linkedin.com/in/alice"), "li_company_url"),
        (lambda c: list(c.company_employees("acme")), "company_uid"),
        (lambda c: list(c.search_people("")), "query"),
        (lambda c: c.find_person(""), "full_name"),
        (lambda c: list(c.search_people(QUERY, max_results=0)), "max_results"),
    ],
)
def test_bad_input_is_refused_before_any_call(
    captaindata_emulator: EmulatorClient, client: V1Client, call: Any, named: str
) -> None:
    with pytest.raises(CaptainDataConfigError, match=named):
        call(client)
    assert captaindata_emulator.requests() == []


def test_424_is_tried_again_then_raised(captaindata_emulator: EmulatorClient, client: V1Client) -> None:
    captaindata_emulator.add_fault("GET", "/v1/people/enrich", status=424, times=2)
    assert client.enrich_person("https://www.linkedin.com/in/alice")["li_profile_url"].endswith("/alice")
    captaindata_emulator.add_fault("GET", "/v1/people/enrich", status=424, times=None, match_body="in/bob")
    with pytest.raises(CaptainDataAPIError) as failed:
        client.enrich_person("https://www.linkedin.com/in/bob")
    assert failed.value.status_code == 424
    assert len(captaindata_emulator.requests("GET", "/v1/people/enrich")) == 6


def test_429_waits_for_retry_after(captaindata_emulator: EmulatorClient, client: V1Client) -> None:
    captaindata_emulator.add_fault("GET", "/v1/quotas", status=429, retry_after=1, times=1)
    started = time.monotonic()
    assert "credits_left" in client.quotas()
    assert time.monotonic() - started >= 1.0
    assert [r["status"] for r in captaindata_emulator.requests("GET", "/v1/quotas")] == [429, 200]


def test_errors_carry_label_scope_ref_message_and_data(
    captaindata_emulator: EmulatorClient, client: V1Client
) -> None:
    captaindata_emulator.configure(v1_cursor_ttl_seconds=0.0)
    pager = client.pager("search_people", query=QUERY)
    pages = client.read(pager)
    next(pages)
    time.sleep(0.01)
    pager.restarts = 99  # no restart left: the refusal is raised as the API gave it
    with pytest.raises(CaptainDataAPIError) as refused:
        next(pages)
    error = refused.value
    assert (error.status_code, error.error_label, error.error_scope) == (400, "CURSOR_EXPIRED", "input")
    assert error.error_ref and error.message and error.data["cursor_age_seconds"] > 0
    assert captaindata_emulator.api_key not in str(error)


def test_the_plans_rate_is_shared_by_every_client_of_the_worker(captaindata_emulator: EmulatorClient) -> None:
    captaindata_emulator.configure(v1_plan="Bronze")  # 2 requests a second, nothing queued
    emu = captaindata_emulator
    clients = [V1Client(emu.api_key, base_url=emu.v1_url, rate_limit_per_second=2) for _ in range(2)]
    for index in range(6):
        clients[index % 2].find_company(f"Company {index}")
    statuses = [r["status"] for r in emu.requests("GET", "/v1/companies/find")]
    assert statuses == [200] * 6


# -- through the Airflow connection -----------------------------------------------------------


def _connection(emu: EmulatorClient, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = emu.connection_json()
    conn.setdefault("extra", {}).update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))


def test_a_v1_key_works_with_the_same_connection_type(
    captaindata_emulator: EmulatorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

    _connection(captaindata_emulator, monkeypatch, api_version="v1", rate_limit_per_second=40)
    ok, message = CaptainDataHook().test_connection()
    assert ok and message.startswith("v1 OK"), message
    assert [r["path"] for r in captaindata_emulator.requests()] == ["/v1/quotas"]
    assert CaptainDataHook().v1_client().find_company("Acme")["uid"]

    async def through_async_hook() -> dict[str, Any]:
        client = await CaptainDataAsyncHook().v1_client()
        try:
            return await client.quotas()
        finally:
            await client.aclose()

    assert "credits_left" in asyncio.run(through_async_hook())


def test_test_connection_falls_back_to_v1_when_v4_refuses_the_key(
    captaindata_emulator: EmulatorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

    _connection(captaindata_emulator, monkeypatch)
    captaindata_emulator.add_fault("GET", "/v4/workspaces", status=401, times=None)
    ok, message = CaptainDataHook().test_connection()
    assert ok and "v1 OK" in message and "api_version" in message, message


def test_api_version_is_checked(
    captaindata_emulator: EmulatorClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

    _connection(captaindata_emulator, monkeypatch, api_version="v2")
    with pytest.raises(CaptainDataConfigError, match="api_version"):
        CaptainDataHook().settings  # noqa: B018
