"""v4 query parameters checked against the official document, as the API checks them."""

from __future__ import annotations

import subprocess
import sys
import time
import types
import uuid
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.emulator import v4_runs
from tests.emulator.conftest import Receiver, is_error_body
from tests.emulator.test_catalog import DOCUMENT, REPO
from tests.emulator.test_v4_async import EXTRACT, SEARCH, launch, profiles, searches

SOME_UUID = str(uuid.UUID(int=7))


def refused(answer: httpx.Response, field: str) -> bool:
    body = answer.json()
    return answer.status_code == 400 and is_error_body(body, 400) and body["params"] == {"field": field}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/runs", {"uid": "not-a-uuid"}, "uid"),
        ("/runs", {"user_uid": f"{SOME_UUID},nope"}, "user_uid"),
        ("/runs", {"workspace_uid": "123"}, "workspace_uid"),
        ("/runs", {"sort": ",".join(["created_at"] * 11)}, "sort"),
        ("/runs", {"sort": "x" * 129}, "sort"),
        ("/runs", {"limit": "ten"}, "limit"),
        ("/runs", {"limit": 101}, "limit"),
        ("/runs", {"offset": -1}, "offset"),
        ("/runs", {"status": "DONE"}, "status"),
        ("/runs/callbacks", {"limit": 21}, "limit"),
        ("/runs/callbacks", {"run_uid": "run-1"}, "run_uid"),
        ("/runs/callbacks", {"status": "SUCCEEDED"}, "status"),
        ("/schedules", {"created_at": "yesterday"}, "created_at"),
        ("/schedules", {"next_execution_at": "2026-01-01T10:00:00"}, "next_execution_at"),  # no zone
        ("/schedules", {"workspace_uid": "w"}, "workspace_uid"),
        ("/schedules", {"status": "RUNNING"}, "status"),
    ],
)
def test_lists_refuse_what_the_document_calls_invalid(
    v4: httpx.Client, path: str, params: dict[str, Any], field: str
) -> None:
    assert refused(v4.get(path, params=params), field), params


def test_lists_take_what_the_document_allows(v4: httpx.Client, receiver: Receiver) -> None:
    uid = launch(v4, EXTRACT, profiles(1), receiver.url)["run_uid"]
    launch(v4, EXTRACT, profiles(1), receiver.url)
    ten_keys = ["-created_at", "status", "uid", "action_name", "id", "updated_at", "user_uid"] + ["id"] * 3
    for params in (
        {"uid": uid.upper()},
        [("uid", uid), ("uid", SOME_UUID)],
        {"uid": f"{uid}, {SOME_UUID}", "sort": ",".join(ten_keys), "limit": 100},
    ):
        answer = v4.get("/runs", params=params)
        assert answer.status_code == 200, answer.text
        assert [r["uid"] for r in answer.json()] == [uid]
    assert v4.get("/runs/callbacks", params={"limit": 20, "run_uid": uid}).status_code == 200
    assert v4.get("/schedules", params={"created_at": "2026-01-01T10:00:00Z", "limit": 100}).json() == []


def test_live_query_follows_the_document(v4: httpx.Client) -> None:
    body = {"input": searches(1)[0]}
    path = f"/actions/{SEARCH}/run/live"
    assert refused(v4.post(path, params={"page": "two"}, json=body), "page")
    assert refused(v4.post(path, params={"page_size": 11}, json=body), "page_size")  # the document: 10
    assert v4.post(path, params={"page": 2, "page_size": 10}, json=body).status_code == 200


def test_runs_of_the_same_instant_list_in_creation_order(
    v4: httpx.Client, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every run created at the very same instant: the order must still follow creation, in the
    # direction asked (the newest first under -created_at), never the dict's or the sort's whim.
    instant = types.SimpleNamespace(time=lambda: 1_800_000_000.0, monotonic=time.monotonic)
    monkeypatch.setattr(v4_runs, "time", instant)
    uids = [launch(v4, EXTRACT, profiles(1), receiver.url)["run_uid"] for _ in range(3)]
    live = v4.post(f"/actions/{EXTRACT}/run/live", json={"input": profiles(1)[0]})
    assert live.status_code == 200, live.text
    oldest_first = [r["uid"] for r in v4.get("/runs").json()]
    newest_first = [r["uid"] for r in v4.get("/runs", params={"sort": "-created_at"}).json()]
    assert oldest_first[:3] == uids
    assert newest_first == oldest_first[::-1]
    by_mode = v4.get("/runs", params={"sort": "-execution_mode,created_at"}).json()
    assert [r["execution_mode"] for r in by_mode] == ["LIVE", "ASYNC", "ASYNC", "ASYNC"]
    assert [r["uid"] for r in by_mode[1:]] == uids


@pytest.mark.skipif(not DOCUMENT.exists(), reason="the OpenAPI document is not beside the repository")
def test_committed_query_rules_are_what_the_document_gives() -> None:
    script = REPO / "scripts" / "derive_v4_queries.py"
    result = subprocess.run(
        [sys.executable, str(script), str(DOCUMENT), "--check"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
