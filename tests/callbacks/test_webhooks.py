"""v3 webhooks end to end over loopback: the emulator sends them, the receiver authenticates and
stores them, and the event trigger in webhook mode fires from them without listing runs."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.callbacks.webhooks import (
    WebhookStore,
    check_webhook_token,
    webhook_kind,
    webhook_url_for,
)
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from airflow_provider_captaindata.triggers.events import CaptainDataRunFinishedTrigger
from tests.callbacks.conftest import LAUNCH_KEY, SECRET, Receiver
from tests.test_event_trigger import Api, DictStateStore, Watch, recreate


def webhook_body(job_uid: str = "0b1c2d3e-aaaa-4bbb-8ccc-123456789abc", **fields: Any) -> dict[str, Any]:
    return {
        "uid": "9e8d7c6b-0000-4000-8000-000000000001",
        "job_uid": job_uid,
        "message": "Run 'x' succeeded",
        "project_uid": "p",
        "error": None,
        "recipe_ref": None,
        "workflow_uid": "w",
        "workflow_name": "W",
        "job_name": "x",
        **fields,
    }


def stored(receiver: Receiver, name: str = "default") -> list[dict[str, Any]]:
    store = WebhookStore(receiver.storage)
    return [store.read_event(name, f) or {} for f, _ in store.list_events(name)]


def test_url_and_token() -> None:
    url = webhook_url_for("https://airflow.example.com/captaindata/", SECRET, "crm-sync")
    prefix = "https://airflow.example.com/captaindata/webhooks/v3/crm-sync/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert check_webhook_token(SECRET, "crm-sync", token) == "ok"
    assert check_webhook_token("another secret", "crm-sync", token) == "invalid"
    assert check_webhook_token(SECRET, "other", token) == "invalid"  # bound to its name
    assert check_webhook_token(SECRET, "crm-sync", "short") == "malformed"
    # A callback token signed with the same secret is no webhook token.
    callback_token = callback_url_for("https://h", SECRET, LAUNCH_KEY).rsplit("/", 1)[1]
    assert check_webhook_token(SECRET, "crm-sync", callback_token) == "invalid"
    with pytest.raises(CaptainDataConfigError, match="webhook_name"):
        webhook_url_for("https://h", SECRET, "Bad/Name")
    with pytest.raises(CaptainDataConfigError, match="secret"):
        webhook_url_for("https://h", "", "default")


def test_kind_is_guessed_from_error_and_message() -> None:
    assert webhook_kind(webhook_body(message="Run created")) == "created"
    assert webhook_kind(webhook_body(message="Run succeeded")) == "succeeded"
    assert webhook_kind(webhook_body(message="whatever", error="cookies expired")) == "failed"
    assert webhook_kind(webhook_body(message="?")) == "unknown"


def test_receiver_stores_an_authenticated_webhook_as_sent(receiver: Receiver, client: httpx.Client) -> None:
    raw = json.dumps(webhook_body()).encode()
    url = webhook_url_for(receiver.base_url, SECRET)
    answer = client.post(url, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    files = [p for p in receiver.stored_files() if "webhooks" in p.parts]
    assert len(files) == 1 and files[0].read_bytes() == raw
    assert files[0].parent == receiver.folder / "webhooks" / "v3" / "default"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/webhooks/v3/default/" + "A" * 43, webhook_body(), 403),  # wrong token
        ("/webhooks/v3/default/short", webhook_body(), 401),
        ("/webhooks/v3/default", webhook_body(), 401),
        ("/webhooks/v3/Bad%20Name/" + "A" * 43, webhook_body(), 401),
        (None, b"not json", 400),
        (None, {"message": "no job uid"}, 400),
        (None, webhook_body(job_uid="../../etc"), 400),
        (None, webhook_body(message=7), 400),
        (None, webhook_body(error="x" * 70_000), 413),
    ],
)
def test_receiver_refuses_and_stores_nothing(
    receiver: Receiver, client: httpx.Client, path: str | None, body: Any, status: int
) -> None:
    url = receiver.base_url + path if path else webhook_url_for(receiver.base_url, SECRET)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = client.post(url, content=content)
    assert answer.status_code == status, answer.text
    assert receiver.stored_files() == []


def test_access_log_never_shows_the_token(
    logged_receiver: Receiver, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    url = webhook_url_for(logged_receiver.base_url, SECRET)
    token = url.rsplit("/", 1)[1]
    with caplog.at_level(logging.INFO):
        assert client.post(url, json=webhook_body()).status_code == 200
        assert client.post(url + "x/extra", json=webhook_body()).status_code == 401
        assert client.post(url[:-3] + "AAA", json=webhook_body()).status_code == 403
    # The test's own HTTP client logs the URLs it calls: not the receiver's logs.
    server_log = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "/webhooks/v3/default/REDACTED" in server_log and "Refused a webhook" in server_log
    assert token not in server_log and token[:-3] not in server_log


@pytest.fixture
def emulated(captaindata_emulator: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Api:
    """The emulator sending its v3 webhooks to the receiver; the connection knows its storage."""
    captaindata_emulator.configure(v3_pending_seconds=0.05, v3_running_seconds=0.3)
    captaindata_emulator.set_webhook(webhook_url_for(receiver.base_url, SECRET))
    connection = captaindata_emulator.connection_json()
    connection["extra"]["callback_storage"] = receiver.storage
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(connection))
    return Api(captaindata_emulator)


def workflows() -> list[str]:
    return [w.uid for w in CaptainDataHook().list_workflows() if len(w.steps) == 1]


def wait_for_webhooks(emulator: Any, count: int) -> list[dict[str, Any]]:
    async def wait() -> list[dict[str, Any]]:
        while len(sent := emulator.webhooks_sent()) < count:
            await asyncio.sleep(0.05)
        return sent

    return asyncio.run(asyncio.wait_for(wait(), 30))


def test_emulator_sends_created_then_succeeded_or_failed(
    emulated: Api, receiver: Receiver, captaindata_emulator: Any
) -> None:
    first, second = workflows()[:2]
    captaindata_emulator.force_outcome(second, "shutdown", error_message="proxy down")
    ok = emulated.start_v3(first, "ok")
    failed = emulated.start_v3(second, "broken")
    sent = wait_for_webhooks(captaindata_emulator, 4)
    assert {(s["job_uid"], s["kind"], s["status_code"]) for s in sent} == {
        (ok, "created", 200),
        (ok, "succeeded", 200),
        (failed, "created", 200),
        (failed, "failed", 200),
    }
    bodies = stored(receiver)
    assert [webhook_kind(b) for b in bodies if b["job_uid"] == failed] == ["created", "failed"]
    failure = next(b for b in bodies if b["job_uid"] == failed and b["error"])
    assert failure["error"] == "proxy down" and failure["workflow_uid"] == second
    assert set(failure) == set(webhook_body())


def test_emulator_per_workflow_webhook(receiver: Receiver, captaindata_emulator: Any) -> None:
    captaindata_emulator.configure(v3_pending_seconds=0.05, v3_running_seconds=0.1)
    first, second = workflows()[:2]
    captaindata_emulator.set_webhook(webhook_url_for(receiver.base_url, SECRET, "first"), workflow_uid=first)
    api = Api(captaindata_emulator)
    mine = api.start_v3(first, "watched")
    api.start_v3(second, "not watched")  # no webhook configured for it, none global
    sent = wait_for_webhooks(captaindata_emulator, 2)
    api.wait_final("v3", mine)
    assert {s["job_uid"] for s in sent} == {mine}
    assert {b["job_uid"] for b in stored(receiver, "first")} == {mine}


def test_trigger_in_webhook_mode_fires_from_stored_webhooks(emulated: Api, captaindata_emulator: Any) -> None:
    first, second = workflows()[:2]
    store = DictStateStore()
    trigger = CaptainDataRunFinishedTrigger(workflow_uid=first, mode="webhook", poll_interval=0.1)
    trigger.asset_state_store = store

    async def scenario() -> tuple[list[dict[str, Any]], str, str]:
        watch = Watch(trigger)
        await asyncio.sleep(0.3)  # first look: the baseline
        uids = [emulated.start_v3(first, "one"), emulated.start_v3(first, "two")]
        emulated.start_v3(second, "another workflow")
        events = await watch.take(2)
        await watch.nothing_more()
        await watch.stop()
        # The triggerer restarts; a run finishes meanwhile.
        late = emulated.start_v3(first, "while down")
        await emulated.await_final("v3", late)
        watch = Watch(recreate(trigger))
        after = await watch.next()
        await watch.nothing_more()
        await watch.stop()
        assert sorted(e["run_uid"] for e in events) == sorted(uids)
        return events, after["run_uid"], late

    events, after, late = asyncio.run(scenario())
    assert after == late
    assert {e["source"] for e in events} == {"webhook"} and {e["state"] for e in events} == {"succeeded"}
    assert all(e["workflow_uid"] == first for e in events)
    # No run list was read: each run named by a webhook was read once it was final.
    assert captaindata_emulator.requests("GET", "/v3/workflows/*/jobs") == []


def test_webhook_mode_for_every_workflow_skips_runs_it_cannot_read(
    emulated: Api, receiver: Receiver, captaindata_emulator: Any, client: httpx.Client
) -> None:
    first, second = workflows()[:2]
    trigger = CaptainDataRunFinishedTrigger(mode="webhook", poll_interval=0.1)  # any workflow

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(trigger)
        await asyncio.sleep(0.3)
        # Someone holding the URL posts a run uid that is not in the workspace: read once (404), dropped.
        forged = webhook_body(job_uid="0b1c2d3e-aaaa-4bbb-8ccc-000000000000")
        assert client.post(webhook_url_for(receiver.base_url, SECRET), json=forged).status_code == 200
        uids = [emulated.start_v3(first, "one"), emulated.start_v3(second, "two")]
        events = await watch.take(2)
        await watch.nothing_more()
        await watch.stop()
        assert sorted(e["run_uid"] for e in events) == sorted(uids)
        return events

    events = asyncio.run(scenario())
    assert {e["workflow_uid"] for e in events} == {first, second}
    forged_reads = captaindata_emulator.requests("GET", "/v3/jobs/0b1c2d3e-aaaa-4bbb-8ccc-000000000000")
    assert [r["status"] for r in forged_reads] == [404]


def test_a_found_run_is_not_lost_to_an_error_on_another_run(emulated: Api, captaindata_emulator: Any) -> None:
    """Issue 21 #6: a run found final left ``pending`` before the look ended; a transport error
    reading the next run then dropped the look, and the found run with it."""
    first = workflows()[0]
    # Both runs are named by a webhook (and so pending) well before the first one is final.
    captaindata_emulator.configure(v3_running_seconds=1.0)

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(CaptainDataRunFinishedTrigger(mode="webhook", poll_interval=0.1))
        await asyncio.sleep(0.3)
        found = emulated.start_v3(first, "found final")
        broken = emulated.start_v3(first, "cannot be read")
        # Every read of the second run gets a truncated answer (a transport error).
        captaindata_emulator.add_fault("GET", f"/v3/jobs/{broken}", malformed=True, times=None)
        await emulated.await_final("v3", found)
        event = await watch.next(timeout=25)
        await watch.stop()
        return [event]

    assert [e["run_name"] for e in asyncio.run(scenario())] == ["found final"]


def test_webhook_mode_filters_on_the_run_the_api_returns(
    emulated: Api, receiver: Receiver, client: httpx.Client
) -> None:
    """Issue 22 #6: a webhook naming a run of workflow B with workflow A's uid in its body fired
    A's watcher; whose run it is now comes from the API, never from the posted body."""
    first, second = workflows()[:2]
    trigger = CaptainDataRunFinishedTrigger(workflow_uid=first, mode="webhook", poll_interval=0.1)

    async def scenario() -> tuple[dict[str, Any], str]:
        watch = Watch(trigger)
        await asyncio.sleep(0.3)  # first look: the baseline
        other = emulated.start_v3(second, "another workflow")
        await emulated.await_final("v3", other)
        forged = webhook_body(job_uid=other, workflow_uid=first, message="Run succeeded")
        assert client.post(webhook_url_for(receiver.base_url, SECRET), json=forged).status_code == 200
        await asyncio.sleep(0.5)  # looks that read the forged webhook and the run it names
        mine = emulated.start_v3(first, "mine")
        event = await watch.next()
        await watch.nothing_more()
        await watch.stop()
        return event, mine

    event, mine = asyncio.run(scenario())
    assert event["run_uid"] == mine and event["workflow_uid"] == first
