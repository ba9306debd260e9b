"""Authentication of both API versions, and the error body of every refusal."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_captaindata.emulator import EmulatorClient
from tests.emulator.conftest import is_error_body


def test_v3_accepts_both_key_styles(raw: httpx.Client, emu: EmulatorClient) -> None:
    project = {"x-project-id": emu.project_uid}
    assert (
        raw.get("/v3/workspace", headers={"Authorization": f"x-api-key {emu.api_key}", **project}).status_code
        == 200
    )
    assert raw.get("/v3/workspace", headers={"x-api-key": emu.api_key, **project}).status_code == 200


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({}, "missing API key"),
        ({"Authorization": "x-api-key wrong-key-123"}, "invalid API key"),
        ({"x-api-key": "wrong-key-123"}, "invalid API key"),
        ({"Authorization": "Bearer {key}"}, "missing API key"),
        ({"x-api-key": "{key}"}, "x-project-id"),
        ({"x-api-key": "{key}", "x-project-id": "00000000-0000-4000-8000-000000000000"}, "x-project-id"),
    ],
)
def test_v3_refusals_are_401(
    raw: httpx.Client, emu: EmulatorClient, headers: dict[str, str], hint: str
) -> None:
    headers = {k: v.format(key=emu.api_key) for k, v in headers.items()}
    if "x-project-id" not in headers and hint != "x-project-id":
        headers["x-project-id"] = emu.project_uid
    answer = raw.get("/v3/workflows", headers=headers)
    assert answer.status_code == 401
    body = answer.json()
    assert is_error_body(body, 401) and body["error_label"] == "UNAUTHORIZED"
    assert hint in body["message"]
    assert "wrong-key-123" not in answer.text and emu.api_key not in answer.text


def test_v4_needs_x_api_key(raw: httpx.Client, emu: EmulatorClient) -> None:
    assert raw.get("/v4/workspaces", headers={"X-API-Key": emu.api_key}).status_code == 200
    assert (
        raw.get("/v4/workspaces", headers={"x-api-key": emu.api_key}).status_code == 200
    )  # names are case-blind
    for headers in ({}, {"X-API-Key": "wrong-key-123"}, {"Authorization": f"x-api-key {emu.api_key}"}):
        answer = raw.get("/v4/workspaces", headers=headers)
        assert answer.status_code == 401
        assert is_error_body(answer.json(), 401)
        assert "wrong-key-123" not in answer.text and emu.api_key not in answer.text


def test_auth_is_checked_before_routing_and_validation(raw: httpx.Client) -> None:
    answer = raw.post("/v4/actions/no-such-action/run/live", json={"input": {}})
    assert answer.status_code == 401
    assert raw.get("/v3/nothing-here").status_code == 401


def test_refusals_are_logged(raw: httpx.Client, emu: EmulatorClient) -> None:
    raw.get("/v4/workspaces")
    (record,) = emu.requests(path="/v4/workspaces")
    assert record["status"] == 401


def test_control_api_needs_no_auth_and_is_not_logged(raw: httpx.Client, emu: EmulatorClient) -> None:
    assert raw.get("/_emulator/config").status_code == 200
    assert emu.requests() == []
