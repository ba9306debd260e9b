"""The v4 action catalog: derived from the official document, checked by the hook and emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_captaindata.client import catalog

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO.parent / "shared" / "reference" / "captaindata-v4-openapi.json"


def test_all_71_actions_with_their_modes() -> None:
    names = catalog.action_names()
    assert len(names) == 71 and names == sorted(names)
    assert all(catalog.get_action(n).modes == {"live", "async", "schedule"} for n in names)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "paginated", "page_size", "pagination"),
    [
        ("linkedin-search-people", True, 10, "page"),
        ("linkedin-search-companies", True, 10, "page"),
        ("salesnavigator-search-people", True, 25, "page"),
        ("linkedin-extract-conversations", True, 10, "token"),
        ("linkedin-extract-people", False, None, None),
        ("linkedin-extract-similar-companies", False, None, None),
    ],
)
def test_pagination_and_page_size(
    name: str, paginated: bool, page_size: int | None, pagination: str | None
) -> None:
    spec = catalog.get_action(name)
    assert spec is not None
    assert (spec.paginated, spec.page_size, spec.pagination) == (paginated, page_size, pagination)


def test_action_spec_fields() -> None:
    spec = catalog.get_action("linkedin-extract-people")
    assert spec is not None
    assert spec.title == "LinkedIn: Extract People"
    assert spec.required_inputs == ("linkedin_profile_url",)
    url = spec.input_fields["linkedin_profile_url"]
    assert (url.type, url.required, url.format) == ("string", True, "uri")
    assert "custom_data" not in spec.input_fields
    assert spec.parameter_fields["skills"].type == "boolean"
    assert spec.output_fields["linkedin_profile_url"] == "string:uri"
    assert spec.output_fields["linkedin_profile_id"] == "integer"
    assert not spec.returns_array and spec.takes_input
    assert spec.bodies["live"].fields == {"input", "parameters", "identity_ids", "identity_mode"}
    assert spec.bodies["async"].required == ("callback", "inputs")
    assert spec.bodies["async"].max_inputs == 100_000
    assert spec.bodies["schedule"].max_inputs == 100
    assert spec.bodies["schedule"].required_any_of == (("cron",), ("schedule_at",))


def test_actions_without_input_and_with_one_of_inputs() -> None:
    me = catalog.get_action("linkedin-me")
    assert me is not None and not me.takes_input and me.bodies["live"].fields == {"identity_ids"}
    comment = catalog.get_action("linkedin-comment-post")
    assert comment is not None
    assert comment.required_any_of == (("linkedin_post_url",), ("linkedin_comment_url",))
    assert catalog.validate_input("linkedin-comment-post", {}) == [
        "one of 'linkedin_post_url' or 'linkedin_comment_url' is required"
    ]
    assert catalog.validate_input("linkedin-comment-post", {"linkedin_comment_url": "x"}) == []


def test_validate_input_messages_name_each_field() -> None:
    assert catalog.validate_input("linkedin-extract-people", {"linkedin_profile_url": "u"}) == []
    assert (
        catalog.validate_input("linkedin-extract-people", {"linkedin_profile_url": "u", "custom_data": {}})
        == []
    )
    problems = catalog.validate_input("linkedin-extract-people", {"custom_data": {"id": 1}, "profile": "x"})
    assert any("linkedin_profile_url" in p and "required" in p for p in problems)
    assert any("unknown" in p and "'profile'" in p for p in problems)
    (wrong,) = catalog.validate_input("linkedin-extract-people", {"linkedin_profile_url": 42})
    assert "linkedin_profile_url" in wrong and "string" in wrong
    (custom,) = catalog.validate_input(
        "linkedin-extract-people", {"linkedin_profile_url": "u", "custom_data": 3}
    )
    assert "custom_data" in custom
    (unknown,) = catalog.validate_input("linkedin-extract-peple", {})
    assert "linkedin-extract-people" in unknown


def test_patterns_are_checked_only_on_request() -> None:
    bad = {"linkedin_profile_url": "https://example.com/in/x"}
    assert catalog.validate_input("linkedin-extract-people", bad) == []
    (problem,) = catalog.input_problems("linkedin-extract-people", bad, check_patterns=True)
    assert problem.field == "linkedin_profile_url"
    good = {"linkedin_profile_url": "https://www.linkedin.com/in/jane-doe"}
    assert catalog.input_problems("linkedin-extract-people", good, check_patterns=True) == []


def test_enums_and_nullable() -> None:
    spec = catalog.get_action("googlemaps-extract-place")
    assert spec is not None
    country = spec.parameter_fields["country"]
    assert country.enum is not None and "FR" in country.enum
    assert catalog.value_problem(country, "XX") is not None
    assert catalog.value_problem(country, "FR") is None


def test_closest_actions() -> None:
    assert catalog.closest_actions("linkedin-extract-peple")[0] == "linkedin-extract-people"
    assert catalog.closest_actions("zzz") == []
    assert catalog.get_action("nope") is None


def test_importing_the_catalog_reads_nothing() -> None:
    code = (
        "import sys; import airflow_provider_captaindata.client.catalog as c; "
        "assert c._raw_catalog.cache_info().currsize == 0; "
        "assert 'difflib' not in sys.modules; print(len(c.action_names()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "71"


@pytest.mark.skipif(not DOCUMENT.exists(), reason="the OpenAPI document is not beside the repository")
def test_committed_catalog_is_what_the_document_gives() -> None:
    script = REPO / "scripts" / "derive_catalog.py"
    result = subprocess.run(
        [sys.executable, str(script), str(DOCUMENT), "--check"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
