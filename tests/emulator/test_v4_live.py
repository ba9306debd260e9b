"""v4 live runs: one object or a page of rows, header pagination, validation, run records."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.client import catalog
from airflow_provider_captaindata.emulator import EmulatorClient
from tests.emulator.conftest import is_error_body

PROFILE = "https://www.linkedin.com/in/jane-doe"
SEARCH = "https://www.linkedin.com/search/results/people/?keywords=data%20engineer"
LIVE = "/actions/{}/run/live"
PEOPLE = "linkedin-extract-people"
REVIEWS = "tripadvisor-extract-reviews"
URL_FIELD = "linkedin_profile_url"
ONE = {"input": {URL_FIELD: PROFILE}}


def live(v4: httpx.Client, action: str, body: dict[str, Any], url: str | None = None) -> httpx.Response:
    return v4.post(url or LIVE.format(action), json=body)


def read_pages(v4: httpx.Client, action: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages = []
    url: str | None = None
    while True:
        answer = live(v4, action, body, url)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        url = answer.headers.get("X-Pagination-Next")
        if not url or url == "null":
            return pages


def test_extract_answers_one_object_shaped_like_the_output(v4: httpx.Client) -> None:
    body = {"input": {"linkedin_profile_url": PROFILE, "custom_data": {"crm_id": 7}}}
    answer = live(v4, "linkedin-extract-people", body)
    assert answer.status_code == 200 and "X-Pagination-Next" not in answer.headers
    row = answer.json()
    spec = catalog.get_action("linkedin-extract-people")
    assert spec is not None
    assert set(row) == set(spec.output_fields) | {"custom_data"}
    assert row["linkedin_profile_url"] == PROFILE  # the profile asked for
    assert row["custom_data"] == {"crm_id": 7}
    assert isinstance(row["linkedin_profile_id"], int) and isinstance(row["full_name"], str)
    assert live(v4, "linkedin-extract-people", body).json() == row  # deterministic


def test_search_pages_follow_the_next_header_to_the_end(v4: httpx.Client, emu: EmulatorClient) -> None:
    body = {"input": {"linkedin_people_search_url": SEARCH, "custom_data": {"tag": "a"}}}
    first = live(v4, "linkedin-search-people", body)
    assert (
        first.headers["X-Pagination-Next"] == f"{emu.v4_url}/actions/linkedin-search-people/run/live?page=2"
    )
    assert "X-Pagination-Previous" not in first.headers
    pages = read_pages(v4, "linkedin-search-people", body)
    assert [len(p) for p in pages] == [10, 10, 10, 5]
    rows = [r for p in pages for r in p]
    assert len({r["linkedin_profile_url"] for r in rows}) == 35
    assert all(r["custom_data"] == {"tag": "a"} for r in rows)
    second = live(v4, "linkedin-search-people", body, first.headers["X-Pagination-Next"])
    assert (
        second.headers["X-Pagination-Previous"]
        == f"{emu.v4_url}/actions/linkedin-search-people/run/live?page=1"
    )
    assert len(emu.requests(method="POST", path="/v4/actions/linkedin-search-people/run/live*")) == 6


@pytest.mark.parametrize(("style", "header"), [("absent", None), ("empty", ""), ("null", "null")])
def test_last_page_header_styles(
    v4: httpx.Client, emu: EmulatorClient, style: str, header: str | None
) -> None:
    emu.configure(v4_search_total_results=12, v4_last_page_header=style)
    body = {"input": {"linkedin_people_search_url": SEARCH}}
    last = live(
        v4, "linkedin-search-people", body, f"{emu.v4_url}/actions/linkedin-search-people/run/live?page=2"
    )
    assert len(last.json()) == 2
    assert last.headers.get("X-Pagination-Next") == header


def test_sales_navigator_pages_of_25_and_a_total_of_0(v4: httpx.Client, emu: EmulatorClient) -> None:
    body = {
        "input": {
            "sales_navigator_profile_search_url": "https://www.linkedin.com/sales/search/people?query=x"
        }
    }
    emu.configure(v4_search_total_results=60)
    assert [len(p) for p in read_pages(v4, "salesnavigator-search-people", body)] == [25, 25, 10]
    emu.configure(v4_search_total_results=0)
    assert read_pages(v4, "salesnavigator-search-people", body) == [[]]


def test_token_cursor_actions(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.configure(v4_search_total_results=23)
    first = live(v4, "linkedin-extract-conversations", {})
    assert "token=" in first.headers["X-Pagination-Next"] and "X-Pagination-Previous" not in first.headers
    assert [len(p) for p in read_pages(v4, "linkedin-extract-conversations", {})] == [10, 10, 3]
    bad = live(
        v4, "linkedin-extract-conversations", {}, LIVE.format("linkedin-extract-conversations") + "?token=zz"
    )
    assert bad.status_code == 400 and bad.json()["params"] == {"field": "token"}


def test_list_action_without_pagination_answers_everything(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.configure(v4_search_total_results=12)
    answer = live(
        v4,
        "linkedin-extract-similar-companies",
        {"input": {"linkedin_company_url": "https://www.linkedin.com/company/acme"}},
    )
    assert (
        answer.status_code == 200 and len(answer.json()) == 12 and "X-Pagination-Next" not in answer.headers
    )


@pytest.mark.parametrize(
    ("action", "body", "field", "words"),
    [
        (PEOPLE, {"inputs": [{"linkedin_profile_url": PROFILE}]}, "inputs", "live"),
        (PEOPLE, {}, "input", "required"),
        (PEOPLE, {"input": {"custom_data": {}}}, "input." + URL_FIELD, "required"),
        (PEOPLE, {"input": {"linkedin_profile_url": 3}}, "input." + URL_FIELD, "string"),
        (PEOPLE, {"input": {"linkedin_profile_url": "https://x.test/a"}}, "input." + URL_FIELD, "invalid"),
        (PEOPLE, {"input": {**ONE["input"], "x": 1}}, "input.x", "unknown"),
        (PEOPLE, {**ONE, "foo": 1}, "foo", "unknown"),
        (PEOPLE, {**ONE, "parameters": {"nope": True}}, "parameters.nope", "unknown"),
        (PEOPLE, {**ONE, "parameters": {"skills": "yes"}}, "parameters.skills", "boolean"),
        (PEOPLE, {**ONE, "identity_mode": "pool"}, "identity_mode", "one of"),
        (PEOPLE, {**ONE, "identity_ids": "abc"}, "identity_ids", "list"),
        (PEOPLE, {"input": "https://www.linkedin.com/in/x"}, "input", "object"),
        ("linkedin-me", {"input": {}}, "input", "no input"),
        (REVIEWS, {"input": {"tripadvisor_reviews_url": "u"}}, "parameters", "required"),
    ],
)  # fmt: skip
def test_invalid_bodies_are_400_naming_the_field(
    v4: httpx.Client, action: str, body: dict[str, Any], field: str, words: str
) -> None:
    answer = live(v4, action, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert is_error_body(error, 400)
    assert (error["error_label"], error["error_scope"], error["params"]["field"]) == (
        "INVALID_INPUT",
        "input",
        field,
    )
    assert field.rsplit(".", 1)[-1] in error["message"] and words in error["message"]


def test_patterns_can_be_relaxed(v4: httpx.Client, emu: EmulatorClient) -> None:
    body = {"input": {"linkedin_profile_url": "https://x.test/in/a"}}
    assert live(v4, "linkedin-extract-people", body).status_code == 400
    emu.configure(validate_input_patterns=False)
    assert live(v4, "linkedin-extract-people", body).status_code == 200


def test_accepted_bodies(v4: httpx.Client) -> None:
    base = {"input": {"linkedin_profile_url": PROFILE}}
    for extra in (
        {"parameters": {"skills": True}},
        {"identity_ids": ["4b8c0c6e-1f3a-4e8b-9a52-0d6f8c1e2a3b"], "identity_mode": "direct"},
        {"identity_ids": None, "identity_mode": None},
        {"integration_users": ["4b8c0c6e-1f3a-4e8b-9a52-0d6f8c1e2a3b"]},  # the legacy name
        {"identity_mode": "managed"},
    ):
        assert live(v4, "linkedin-extract-people", {**base, **extra}).status_code == 200, extra
    assert live(v4, "linkedin-me", {}).status_code == 200
    comment = {"input": {"linkedin_comment_url": "https://www.linkedin.com/feed/update/urn:li:activity:1"}}
    assert live(v4, "linkedin-comment-post", comment).status_code == 200


def test_unknown_action_is_404_with_a_hint(v4: httpx.Client) -> None:
    answer = live(v4, "linkedin-extract-peple", {"input": {}})
    assert answer.status_code == 404
    assert is_error_body(answer.json(), 404) and "linkedin-extract-people" in answer.json()["message"]
    assert v4.post("/actions/linkedin-extract-people/run/sideways", json={}).status_code == 404
    assert v4.get(LIVE.format("linkedin-extract-people")).status_code == 405


def test_live_calls_are_runs_and_spend_credits(v4: httpx.Client) -> None:
    before = v4.get("/workspaces").json()
    live(v4, "linkedin-extract-people", {"input": {"linkedin_profile_url": PROFILE}})
    live(v4, "linkedin-search-people", {"input": {"linkedin_people_search_url": SEARCH}})
    live(
        v4,
        "linkedin-extract-people",
        {"input": {"linkedin_profile_url": PROFILE}, "identity_mode": "managed"},
    )
    after = v4.get("/workspaces").json()
    assert after["credits_used"] - before["credits_used"] == 1 + 10 + 1.5
    assert after["credits_left"] == after["credits_max"] - 13
    runs = v4.get("/runs", params={"execution_mode": "LIVE", "limit": 100}).json()
    assert [r["action_name"] for r in runs] == [
        "linkedin-extract-people",
        "linkedin-search-people",
        "linkedin-extract-people",
    ]
    assert all(r["status"] == "SUCCEEDED" and r["callback"] is None for r in runs)


def test_forced_failure_of_a_live_call_is_424(v4: httpx.Client, emu: EmulatorClient) -> None:
    emu.force_outcome("linkedin-extract-people", "FAILED", error_message="profile not found")
    answer = live(v4, "linkedin-extract-people", {"input": {"linkedin_profile_url": PROFILE}})
    assert answer.status_code == 424
    error = answer.json()
    assert (
        is_error_body(error, 424)
        and error["message"] == "profile not found"
        and error["error_scope"] == "integ"
    )
    (run,) = v4.get("/runs", params={"status": "FAILED"}).json()
    assert run["last_error"] == {"label": "ACTION_FAILED", "message": "profile not found"}
    assert (
        live(v4, "linkedin-extract-people", {"input": {"linkedin_profile_url": PROFILE}}).status_code == 200
    )
