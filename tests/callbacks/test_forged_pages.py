"""Forged pages never reach results: a batch the records list once accepts one page, a second,
different page makes it ambiguous (named, not read), and a batch the task log named missing
cannot be filled by whoever holds the callback URL (issue 22 #3)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks.reconcile import (
    MissingPagesError,
    list_callback_records,
    reconcile_run,
)
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.callbacks.conftest import Receiver, callback_body
from tests.callbacks.test_reconcile import emulator, run_to_the_end  # noqa: F401

FORGED_NAME = "Forged Row"


def forged_page(run_uid: str, batch_uid: str) -> dict[str, Any]:
    body = callback_body(run_uid, batch_uid, rows=3, custom_data={"i": 0})
    for row in body["results"]:
        row["full_name"] = FORGED_NAME
    return body


def rows_of(report: Any) -> list[dict[str, Any]]:
    return [row for page in report.iter_pages() for row in page]


def test_a_second_different_page_under_a_batch_listed_once_is_ambiguous(
    emulator: Any,  # noqa: F811
    receiver: Receiver,
    client: httpx.Client,
) -> None:
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 20, receiver.url(key))
    batches = sorted(r.batch_uid for r in list_callback_records(hook, run_uid) if r.batch_uid)
    # A forged page whose digest sorts first or last: either way it must not be read.
    for batch in (batches[0], batches[-1]):
        assert (
            client.post(receiver.url(key), content=json.dumps(forged_page(run_uid, batch))).status_code == 200
        )
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=5)
    assert report.ambiguous == [batches[0], batches[-1]] and not report.complete
    rows = rows_of(report)
    assert len(rows) == 18 * 2 and all(row["full_name"] != FORGED_NAME for row in rows)
    with pytest.raises(MissingPagesError) as error:
        report.check("fail")
    assert batches[0] in str(error.value) and batches[-1] in str(error.value)


def test_a_batch_named_missing_cannot_be_filled_by_a_forger(
    emulator: Any,  # noqa: F811
    receiver: Receiver,
    client: httpx.Client,
) -> None:
    emulator.configure(callback_drop_rate=1.0)  # every delivery, replays included, is lost
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 3, receiver.url(key))
    first = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=5)
    with pytest.raises(MissingPagesError) as error:
        first.check("fail")
    named = first.missing[0]
    assert named in str(error.value)  # what the task log shows

    # Before the task's retry, whoever holds the URL posts a page under the named batch.
    assert client.post(receiver.url(key), content=json.dumps(forged_page(run_uid, named))).status_code == 200
    retry = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=5)
    assert named in retry.missing and named in retry.unconfirmed and not retry.complete
    assert all(row["full_name"] != FORGED_NAME for row in rows_of(retry))
    with pytest.raises(MissingPagesError, match=named):
        retry.check("fail")


def test_a_forged_fill_is_exposed_by_the_replay_of_the_real_page(
    emulator: Any,  # noqa: F811
    receiver: Receiver,
    client: httpx.Client,
) -> None:
    emulator.configure(callback_drop_rate=1.0)
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 3, receiver.url(key))
    batches = sorted(r.batch_uid for r in list_callback_records(hook, run_uid) if r.batch_uid)
    # The forger fills a batch before any reconciliation; the real pages then arrive by replay.
    assert (
        client.post(receiver.url(key), content=json.dumps(forged_page(run_uid, batches[0]))).status_code
        == 200
    )
    emulator.configure(callback_drop_rate=0.0)
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=10)
    assert report.ambiguous == [batches[0]] and report.missing == []
    rows = rows_of(report)
    assert len(rows) == 2 * 2 and all(row["full_name"] != FORGED_NAME for row in rows)
