"""Callback pages on a real S3 server (SeaweedFS on 127.0.0.1), written by a receiver process.

The receiver runs as its own process, as in production, so the worker's S3 filesystem object
(and its cached directory listings) learns of new pages only by listing S3 again.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks.app import CallbackReceiver
from airflow_provider_captaindata.callbacks.pages import scan_callback
from airflow_provider_captaindata.callbacks.reconcile import list_callback_records, reconcile_run
from airflow_provider_captaindata.callbacks.storage import BodyReader, CallbackStore
from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.airflow_helpers import run_dag, task_states, xcom
from tests.callbacks.conftest import LAUNCH_KEY, SECRET, callback_body
from tests.callbacks.test_cli import Cli
from tests.callbacks.test_reconcile import assert_exactly_once, run_to_the_end
from tests.s3_server import SeaweedS3
from tests.test_actions_async_results import async_dag, profiles


@pytest.fixture
def s3_storage(s3_server: SeaweedS3) -> str:
    return s3_server.uri(f"callbacks-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def s3_receiver(s3_storage: str) -> Iterator[str]:
    """A ``captaindata-callback-receiver`` process storing into S3; yields its base URL."""
    cli = Cli("--port", "0", "--storage", s3_storage, env={"CAPTAINDATA_CALLBACK_SECRET": SECRET})
    base_url = cli.first_line()
    assert base_url.startswith("http://127.0.0.1:"), cli.stop()
    try:
        yield base_url
    finally:
        cli.stop()


def test_replayed_pages_on_s3_are_seen_by_the_reconciliation(
    captaindata_emulator: Any, s3_storage: str, s3_receiver: str
) -> None:
    # Half the first deliveries are lost: the worker lists the run's folder (half the pages),
    # replays the rest, and must see the replayed pages the receiver process writes to S3.
    captaindata_emulator.configure(
        v4_queued_seconds=0.05, v4_running_seconds=0.2, v4_results_per_input=2, callback_drop_rate=0.5
    )
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 40, callback_url_for(s3_receiver, SECRET, key))
    store = CallbackStore(s3_storage)
    stored_before = store.batch_uids(key, run_uid)
    assert 0 < len(stored_before) < 40
    captaindata_emulator.configure(callback_drop_rate=0.0)

    report = reconcile_run(hook, run_uid, key, s3_storage, poll_seconds=0.2, replay_wait_seconds=30)
    assert (report.expected, report.received, report.missing) == (40, 40, [])
    assert report.replayed == 40 - len(stored_before)
    assert {r.batch_uid for r in list_callback_records(hook, run_uid)} == set(report.batch_uids)
    assert_exactly_once([row for page in report.iter_pages() for row in page], 40)
    # The same store object (one S3 filesystem, one listing cache) sees them too.
    assert len(store.batch_uids(key, run_uid)) == 40


@pytest.mark.usefixtures("airflow_db")
def test_async_task_with_s3_callback_storage_returns_every_row(
    captaindata_emulator: Any, s3_storage: str, s3_receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole path as deployed: a DAG task launches, the receiver process stores to S3, lost
    # deliveries are replayed, the task reads the rows from S3. 3% of deliveries are lost
    # (replays too): some of 300 pages always are, and a page lost 4 times in a row (about 2 in
    # 10,000 runs of this test) would be reported missing, rightly.
    captaindata_emulator.configure(
        v4_queued_seconds=0.1, v4_running_seconds=0.5, v4_results_per_input=1, callback_drop_rate=0.03
    )
    conn = captaindata_emulator.connection_json()
    conn["extra"].update(callback_base_url=s3_receiver, callback_secret=SECRET, callback_storage=s3_storage)
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    dag_run = run_dag(async_dag("v4_async_s3", inputs=profiles(300), max_xcom_bytes=10_000_000))
    assert task_states(dag_run) == {"action": "success"}
    rows = xcom(dag_run, "action")
    assert sorted(r["custom_data"]["row"] for r in rows) == list(range(300))
    summary = xcom(dag_run, "action", "callback_summary")
    assert summary["pages_replayed"] > 0 and summary["pages_missing"] == 0


def test_webhooks_written_by_another_process_are_listed_on_s3(s3_server: SeaweedS3, s3_storage: str) -> None:
    # The receiver writes webhooks from its own process: the event trigger's listing must not
    # answer from s3fs's cached listing of the folder it already listed.
    from airflow_provider_captaindata.callbacks.webhooks import WebhookStore

    store = WebhookStore(s3_storage)
    body = {"job_uid": "job-1", "workflow_uid": "wf-1"}
    first = store.write_event("default", json.dumps(body).encode(), received=1_700_000_000.0)
    assert [name for name, _ in store.list_events("default")] == [first.rsplit("/", 1)[1]]
    later = "1700000005000-abcdef01.json"
    key = f"{first.split(f'{s3_server.bucket}/', 1)[1].rsplit('/', 1)[0]}/{later}"
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=json.dumps(body).encode())

    assert store.list_events("default", since=1_700_000_001.0) == [(later, 1_700_000_005.0)]
    assert store.read_event("default", later) == body


def _traced_peak(call: Callable[[], object]) -> int:
    """The most Python memory ``call`` held at once above what was held before (every thread:
    the S3 client sends from fsspec's own event-loop thread)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_a_callback_stored_to_s3_is_never_held_twice(s3_storage: str) -> None:
    # The upload copied the page twice while the receiver still held it: bytes(bytearray),
    # then aiohttp's payload took the buffer of the BytesIO botocore wraps bytes in
    # (getbuffer() copies a shared buffer): 3x the body in flight, 3.1x with the check.
    store = CallbackStore(s3_storage)
    run_uid = str(uuid.uuid4())
    body = callback_body(run_uid, rows=0)
    body["results"] = [{"full_name": f"Person {i}", "headline": "x" * 120, "index": i} for i in range(40_000)]
    data = bytearray(json.dumps(body).encode())  # ~7 MiB, held as the receiver holds it
    del body
    store.write_page(LAUNCH_KEY, run_uid, str(uuid.uuid4()), bytearray(b"{}"), digest="0" * 16)  # warm

    batch = str(uuid.uuid4())
    upload = _traced_peak(lambda: store.write_page(LAUNCH_KEY, run_uid, batch, data, digest="1" * 16))
    stored = _traced_peak(lambda: CallbackReceiver._store(store, LAUNCH_KEY, data, scan_callback(data)))
    mib = 2**20
    print(f"\nbody {len(data) / mib:.1f} MiB: upload +{upload / mib:.1f} MiB, check +{stored / mib:.1f} MiB")
    # What the upload adds is chunks, whatever the body's size: botocore hashes the payload
    # for SigV4 and its checksum 1 MiB at a time, aiohttp sends 64 KiB, reads 256 KiB. A copy
    # of the body would be 7 MiB.
    assert upload <= 3 * 2**20
    # The check holds the body's text (one copy) and one row: the callback costs 2x its body.
    assert stored <= len(data) + 3 * 2**20
    assert store.read_bytes(store.page_path(LAUNCH_KEY, run_uid, f"{batch}.{'1' * 16}")) == data


def test_a_body_reader_read_once_is_sent_whole_again(s3_server: SeaweedS3) -> None:
    # s3fs retries a failed put_object with the same body object, which the failed attempt
    # read to its end: the retry must send the whole page again.
    store = CallbackStore(s3_server.uri(f"reader-{uuid.uuid4().hex[:8]}"))
    data = bytearray(json.dumps(callback_body(rows=2_000)).encode())
    reader = BodyReader(data)
    folder = store.run_folder(LAUNCH_KEY, str(uuid.uuid4()))
    first, again = f"{folder}/first.json", f"{folder}/again.json"
    store.fs.pipe_file(first, reader)
    assert reader.read(1) == b""  # read to its end, as after a failed attempt
    store.fs.pipe_file(again, reader)
    assert store.fs.cat_file(first) == store.fs.cat_file(again) == data
