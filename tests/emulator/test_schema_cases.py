"""The emulator accepts and refuses the v4 request bodies the official document's schemas do.

Each case is checked twice: against the document's request schema with ``jsonschema`` (so the
table itself is right), and against the emulator over HTTP (200 or 400). Skipped when the
document is not beside the repository. The document is OpenAPI 3.1 written partly in 3.0
style, so two things are translated first: ``nullable: true`` becomes a ``null`` type, and
JavaScript regex literals (``/.../i``) become Python patterns.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator import EmulatorClient

DOCUMENT = Path(__file__).resolve().parents[3] / "shared" / "reference" / "captaindata-v4-openapi.json"
pytestmark = pytest.mark.skipif(
    not DOCUMENT.exists(), reason="the OpenAPI document is not beside the repository"
)

jsonschema = pytest.importorskip("jsonschema")

PROFILE = {"linkedin_profile_url": "https://www.linkedin.com/in/jane-doe"}
SEARCH = {"linkedin_people_search_url": "https://www.linkedin.com/search/results/people/?keywords=cto"}
REVIEWS = {"tripadvisor_reviews_url": "https://www.tripadvisor.com/Hotel_Review-g187147-d1-Reviews.html"}
CALLBACK = {"url": "http://127.0.0.1:9/callback", "headers": {"X-Token": "t"}}
IDENTITY = "4b8c0c6e-1f3a-4e8b-9a52-0d6f8c1e2a3b"
LATER = (datetime.now(UTC) + timedelta(days=30)).isoformat()
URL = PROFILE["linkedin_profile_url"]
PEOPLE = "linkedin-extract-people"
REVIEWS_ACTION = "tripadvisor-extract-reviews"
ONE_INPUT = {"inputs": [PROFILE], "callback": CALLBACK}
WEEKLY = {**ONE_INPUT, "cron": "0 9 * * 1"}

# (action, mode, body, valid per the document)
CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    (PEOPLE, "live", {"input": PROFILE}, True),
    (PEOPLE, "live", {"input": {**PROFILE, "custom_data": {"id": 1}}}, True),
    (PEOPLE, "live", {"input": PROFILE, "parameters": {"skills": True}}, True),
    (PEOPLE, "live", {"input": PROFILE, "parameters": {"skills": "yes"}}, False),
    (PEOPLE, "live", {"input": PROFILE, "parameters": {"colour": "red"}}, False),
    (PEOPLE, "live", {"input": PROFILE, "parameters": None}, False),
    (PEOPLE, "live", {"input": PROFILE, "callback": CALLBACK}, False),
    (PEOPLE, "live", {"inputs": [PROFILE]}, False),
    (PEOPLE, "live", {}, False),
    (PEOPLE, "live", {"input": None}, False),
    (PEOPLE, "live", {"input": {"custom_data": {}}}, False),
    (PEOPLE, "live", {"input": {**PROFILE, "name": "Jane"}}, False),
    (PEOPLE, "live", {"input": {"linkedin_profile_url": 42}}, False),
    (PEOPLE, "live", {"input": {"linkedin_profile_url": "https://x.test/in/a"}}, False),
    (PEOPLE, "live", {"input": PROFILE, "identity_mode": "auto"}, True),
    (PEOPLE, "live", {"input": PROFILE, "identity_mode": "pool"}, False),
    (PEOPLE, "live", {"input": PROFILE, "identity_mode": None, "identity_ids": None}, True),
    (PEOPLE, "live", {"input": PROFILE, "identity_ids": [IDENTITY]}, True),
    (PEOPLE, "live", {"input": PROFILE, "identity_ids": IDENTITY}, False),
    (PEOPLE, "live", {"input": PROFILE, "identity_ids": [1]}, False),
    ("linkedin-search-people", "live", {"input": SEARCH}, True),
    ("linkedin-search-people", "live", {"input": {"linkedin_people_search_url": URL}}, False),
    ("linkedin-me", "live", {}, True),
    ("linkedin-me", "live", {"identity_ids": [IDENTITY]}, True),
    ("linkedin-me", "live", {"input": {}}, False),
    ("linkedin-me", "live", {"identity_mode": "auto"}, False),
    (REVIEWS_ACTION, "live", {"input": REVIEWS, "parameters": {"language": "french"}}, True),
    (REVIEWS_ACTION, "live", {"input": REVIEWS}, False),
    (REVIEWS_ACTION, "live", {"input": REVIEWS, "parameters": {"language": "klingon"}}, False),
    (REVIEWS_ACTION, "live", {"input": REVIEWS, "parameters": {}}, False),
    (PEOPLE, "async", ONE_INPUT, True),
    (PEOPLE, "async", {"inputs": [PROFILE] * 3, "callback": {"url": None}}, True),
    (PEOPLE, "async", {**ONE_INPUT, "identity_mode": "managed"}, True),
    (PEOPLE, "async", {"input": PROFILE, "callback": CALLBACK}, False),
    (PEOPLE, "async", {"inputs": [PROFILE]}, False),
    (PEOPLE, "async", {"inputs": [], "callback": CALLBACK}, False),
    (PEOPLE, "async", {"inputs": [PROFILE, {}], "callback": CALLBACK}, False),
    (PEOPLE, "async", {"inputs": [PROFILE], "callback": {"headers": {}}}, False),
    (PEOPLE, "async", {"inputs": [PROFILE], "callback": {"url": "ftp://x.test/cb"}}, False),
    (PEOPLE, "async", {"inputs": [PROFILE], "callback": {**CALLBACK, "headers": {"n": 1}}}, False),
    (PEOPLE, "async", WEEKLY, False),
    ("linkedin-accept-invitations", "async", {"inputs": [{}], "callback": CALLBACK}, True),
    ("linkedin-accept-invitations", "async", {"inputs": [{}, {}], "callback": CALLBACK}, False),
    (PEOPLE, "schedule", WEEKLY, True),
    (PEOPLE, "schedule", {**ONE_INPUT, "schedule_at": LATER}, True),
    (PEOPLE, "schedule", {**WEEKLY, "timezone": "Europe/Paris"}, True),
    (PEOPLE, "schedule", ONE_INPUT, False),
    (PEOPLE, "schedule", {**ONE_INPUT, "cron": ""}, False),
    (PEOPLE, "schedule", {**WEEKLY, "timezone": ""}, False),
    (PEOPLE, "schedule", {**WEEKLY, "inputs": [PROFILE] * 101}, False),
    (PEOPLE, "schedule", {"inputs": [PROFILE], "cron": "0 9 * * 1"}, False),
]  # fmt: skip


def _js_pattern(pattern: str) -> str | None:
    literal = re.fullmatch(r"/(.*)/([gimsuy]*)", pattern, flags=re.DOTALL)
    if literal:
        flags = "".join(f for f in literal.group(2) if f in "ims")
        pattern = f"(?{flags}){literal.group(1)}" if flags else literal.group(1)
    try:
        re.compile(pattern)
    except re.error:
        return None
    return pattern


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0-isms of the document turned into JSON Schema 2020-12."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if isinstance(out.get("pattern"), str):
        pattern = _js_pattern(out["pattern"])
        if pattern is None:
            del out["pattern"]
        else:
            out["pattern"] = pattern
    return out


@functools.cache
def _document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return data


@functools.cache
def _components() -> dict[str, Any]:
    converted: dict[str, Any] = _to_json_schema(_document()["components"])
    return converted


def schema_valid(action: str, mode: str, body: dict[str, Any]) -> bool:
    document = _document()
    operation = document["paths"][f"/actions/{action}/run/{mode}"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    root = {**_to_json_schema(schema), "components": _components()}
    return bool(jsonschema.Draft202012Validator(root).is_valid(body))


@pytest.mark.parametrize(("action", "mode", "body", "valid"), CASES)
def test_emulator_agrees_with_the_document(
    v4: httpx.Client, emu: EmulatorClient, action: str, mode: str, body: dict[str, Any], valid: bool
) -> None:
    assert schema_valid(action, mode, body) is valid, "the table disagrees with the document"
    answer = v4.post(f"/actions/{action}/run/{mode}", json=body)
    assert answer.status_code == (200 if valid else 400), answer.text
    if not valid:
        assert answer.json()["error_label"] == "INVALID_INPUT" and answer.json()["params"]["field"]


def test_legacy_integration_users_is_accepted_beyond_the_document(v4: httpx.Client) -> None:
    # The first v4 release's name for identity_ids: gone from the document, still in the
    # Quickstart; the API reference says to support it.
    body = {"input": PROFILE, "integration_users": [IDENTITY]}
    assert not schema_valid("linkedin-extract-people", "live", body)
    assert v4.post("/actions/linkedin-extract-people/run/live", json=body).status_code == 200
