"""Async runs of the emulator delivering real callbacks to a real receiver, then reconciliation.

Every row must come back exactly once: counted, and identified by (input, row) through the
``custom_data`` each input carries.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks.app import create_app
from airflow_provider_captaindata.callbacks.reconcile import (
    MissingPagesError,
    list_callback_records,
    reconcile_run,
)
from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.callbacks.conftest import SECRET, CountingApp, Receiver, ServerThread, callback_body

EXTRACT = "linkedin-extract-people"
# Enough for every fault to hit many pages (~50 drops); the 1,000-input run is the clean one,
# which keeps this folder's time in budget.
FAULT_INPUTS = 500
FINAL = ("SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED", "INVALID", "STOPPED", "BLOCKED")


@pytest.fixture
def emulator(captaindata_emulator: Any) -> Any:
    captaindata_emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.2, v4_results_per_input=2)
    return captaindata_emulator


def inputs(n: int) -> list[dict[str, Any]]:
    return [
        {"linkedin_profile_url": f"https://www.linkedin.com/in/person-{i:05d}", "custom_data": {"i": i}}
        for i in range(n)
    ]


def run_to_the_end(
    hook: CaptainDataHook,
    n: int,
    callback_url: str,
    timeout: float = 60,
    action: str = EXTRACT,
    items: list[dict[str, Any]] | None = None,
) -> str:
    run = hook.run_action_async(action, items or inputs(n), callback_url=callback_url)
    deadline = time.monotonic() + timeout
    while hook.get_action_run(run.uid).status.upper() not in FINAL:
        assert time.monotonic() < deadline, "the emulator run did not finish"
        time.sleep(0.1)
    return run.uid


def assert_exactly_once(rows: list[dict[str, Any]], n: int, per_input: int = 2) -> None:
    assert len(rows) == n * per_input
    per = Counter(row["custom_data"]["i"] for row in rows)
    assert set(per) == set(range(n))
    assert set(per.values()) == {per_input}
    assert len({json.dumps(row, sort_keys=True) for row in rows}) == len(rows)  # no row twice
    for row in rows:  # each row is about its own input
        assert row["linkedin_profile_url"].endswith(f"person-{row['custom_data']['i']:05d}")


def test_thousand_inputs_every_row_exactly_once(
    emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_captaindata.callbacks")
    # The clean run: no delivery may fail, on a machine as loaded as CI (five Airflow lines'
    # suites at once). Two causes of a replayed clean page there: a POST waiting for a receiver
    # slot past the emulator's 5 s callback timeout, and a POST sent on a connection the receiver
    # was closing at the end of its keep-alive (the emulator's sender now drops idle connections
    # first: tests/emulator/test_v4_async.py).
    emulator.configure(callback_timeout_seconds=60)
    key = uuid.uuid4().hex[:24]
    started = time.monotonic()
    run_uid = run_to_the_end(CaptainDataHook(), 1000, receiver.url(key))
    elapsed = time.monotonic() - started
    report = reconcile_run(CaptainDataHook(), run_uid, key, receiver.storage, poll_seconds=0.2)
    assert (report.expected, report.received, report.replayed, report.missing) == (1000, 1000, 0, [])
    rows = [row for page in report.iter_pages() for row in page]
    assert_exactly_once(rows, 1000)
    assert report.rows == 2000
    assert receiver.posts == 1000
    assert len(list((receiver.folder / key / run_uid).iterdir())) == 1000
    assert "1000 expected, 1000 received, 0 replayed, 0 missing" in caplog.text
    print(f"\n1000 callbacks received in {elapsed:.1f} s ({1000 / elapsed:.0f}/s, emulator in-process)")


def test_faults_are_reconciled_exactly(
    emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_captaindata.callbacks")
    emulator.configure(
        callback_drop_rate=0.1, callback_duplicate_rate=0.1, callback_fail_rate=0.1, callback_reorder=True
    )
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, FAULT_INPUTS, receiver.url(key))
    records = list_callback_records(hook, run_uid)
    assert len(records) == FAULT_INPUTS  # one per page, all listed (25 calls of 20)
    stored_before = {p.name.split(".")[0] for p in (receiver.folder / key / run_uid).iterdir()}
    dropped = FAULT_INPUTS - len(stored_before)
    assert dropped > FAULT_INPUTS // 20  # ~10% never arrived
    assert receiver.posts > len(stored_before)  # duplicates arrived too
    # "fail": delivered and stored, yet recorded FAILED. Stored pages are whole: not replayed.
    failed_but_stored = {r.batch_uid for r in records if r.status == "FAILED"} & stored_before
    assert failed_but_stored

    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.2)
    assert report.missing == []
    assert (report.expected, report.received) == (FAULT_INPUTS, FAULT_INPUTS)
    # Dropped pages were replayed (a replay can be dropped again); failed-but-stored ones were not.
    assert dropped <= report.replayed <= 3 * dropped
    assert report.replayed < dropped * 1.5
    rows = [row for page in report.iter_pages() for row in page]
    assert_exactly_once(rows, FAULT_INPUTS)
    counts = f"{FAULT_INPUTS} expected, {FAULT_INPUTS} received, {report.replayed} replayed, 0 missing"
    assert counts in caplog.text
    replays = emulator.requests(method="POST", path="/v4/runs/callbacks/*/replay")
    assert len(replays) == report.replayed
    replayed_uids = {r["path"].split("/")[-2] for r in replays}
    assert not replayed_uids & {r.uid for r in records if r.batch_uid in failed_but_stored}


def test_pages_still_in_flight_when_the_run_ends_are_awaited_not_replayed(
    emulator: Any, receiver: Receiver
) -> None:
    emulator.configure(callback_delay_seconds=1.5)
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 20, receiver.url(key))
    # The run is final while its deliveries are still going: records RUNNING, nothing stored.
    assert {r.status for r in list_callback_records(hook, run_uid)} == {"RUNNING"}
    assert not (receiver.folder / key).exists()
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.1)
    assert (report.expected, report.received, report.replayed, report.missing) == (20, 20, 0, [])
    assert emulator.requests(method="POST", path="/v4/runs/callbacks/*/replay") == []
    assert_exactly_once([row for page in report.iter_pages() for row in page], 20)


def test_replays_answered_running_are_awaited_not_sent_again(emulator: Any, receiver: Receiver) -> None:
    # Every first delivery is lost; each replay is answered RUNNING and lands 1 s later.
    emulator.configure(callback_drop_rate=1.0, callback_delay_seconds=1.0)
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 20, receiver.url(key))
    assert {r.status for r in list_callback_records(hook, run_uid)} == {"FAILED"}
    emulator.configure(callback_drop_rate=0.0)
    started = time.monotonic()
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.1)
    assert time.monotonic() - started >= 1.0  # it waited for the replays in flight
    assert (report.expected, report.received, report.replayed, report.missing) == (20, 20, 20, [])
    assert len(emulator.requests(method="POST", path="/v4/runs/callbacks/*/replay")) == 20
    assert_exactly_once([row for page in report.iter_pages() for row in page], 20)


def test_receiver_down_during_the_run_then_replayed(emulator: Any, tmp_path: Path) -> None:
    # The URL points at a port where nothing listens yet: every delivery fails (connection
    # refused). The receiver then comes up on that port and reconciliation replays every page.
    counter = CountingApp(create_app(secret=SECRET, storage=tmp_path.as_uri()))
    server = ServerThread(counter)
    base_url = server.base_url
    server.stop()
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 30, callback_url_for(base_url, SECRET, key))
    assert not (tmp_path / key).exists()
    server = ServerThread(counter, port=int(base_url.rsplit(":", 1)[1]))
    try:
        report = reconcile_run(hook, run_uid, key, tmp_path.as_uri(), poll_seconds=0.1)
    finally:
        server.stop()
    assert (report.expected, report.received, report.replayed, report.missing) == (30, 30, 30, [])
    assert_exactly_once([row for page in report.iter_pages() for row in page], 30)


def test_pages_that_never_arrive_fail_or_warn_by_name(
    emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.configure(callback_drop_rate=1.0)  # every delivery, replays included, is lost
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 4, receiver.url(key))
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=5)
    assert report.expected == 4 and report.received == 0
    assert report.replayed == 4 * 3  # the API allows 3 replays per page, no more
    assert len(report.missing) == 4
    assert receiver.posts == 0
    assert list(report.iter_pages()) == []
    with pytest.raises(MissingPagesError) as error:
        report.check("fail")
    for batch_uid in report.missing:
        assert batch_uid in str(error.value)
    caplog.set_level(logging.WARNING)
    report.check("warn")
    assert report.missing[0] in caplog.text
    assert report.summary()["pages_missing"] == 4
    # A second reconciliation has no replay budget left: it reports without replaying.
    again = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=5)
    assert again.replayed == 0 and len(again.missing) == 4


def test_paged_actions_every_page_stored_once(emulator: Any, receiver: Receiver) -> None:
    # A search action sends several pages per input, each under its own batch uid.
    emulator.configure(v4_search_total_results=25)
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    search = [
        {"linkedin_people_search_url": f"https://www.linkedin.com/search/results/people/?q={i}"}
        for i in (1, 2)
    ]
    run_uid = run_to_the_end(hook, 0, receiver.url(key), action="linkedin-search-people", items=search)
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05)
    assert report.complete and report.ambiguous == [] and report.expected == 6  # 10 + 10 + 5, twice
    assert sum(len(rows) for rows in report.iter_pages()) == 2 * 25
    report.check("fail")


class OnePageHook(CaptainDataHook):
    """A hook that cannot page: one call, the API's default page (10 newest records)."""

    def list_run_callbacks(self, run_uid: str) -> list[Any]:  # type: ignore[override]
        return super().list_run_callbacks(run_uid, limit=10, offset=0, sort="-created_at")


def test_hook_without_paging_fails_closed_on_pages_it_cannot_verify(
    emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    key = uuid.uuid4().hex[:24]
    run_uid = run_to_the_end(CaptainDataHook(), 30, receiver.url(key))
    report = reconcile_run(OnePageHook(), run_uid, key, receiver.storage, poll_seconds=0.05)
    # Only 10 records seen (said in the log): the 20 other stored pages have no record to
    # vouch for them, so they are not read, and the report is not complete.
    assert (report.expected, report.received, report.unlisted, report.missing) == (10, 10, 20, [])
    assert "exactly one API page" in caplog.text
    assert sum(len(rows) for rows in report.iter_pages()) == 10 * 2
    assert not report.complete
    with pytest.raises(MissingPagesError, match="20 stored pages have no delivery record"):
        report.check("fail")


def test_stored_pages_without_a_delivery_record_are_not_read(
    emulator: Any, receiver: Receiver, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # Someone holding the launch's URL (a leaked log, a replayed request) posts a page of their
    # own under the run's uid: stored by the receiver, but no delivery record names its batch.
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 20, receiver.url(key))
    forged = callback_body(run_uid, rows=5, custom_data={"i": 0})
    assert client.post(receiver.url(key), content=json.dumps(forged)).status_code == 200
    assert len(list((receiver.folder / key / run_uid).iterdir())) == 21
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05)
    assert (report.expected, report.received, report.unlisted, report.missing) == (20, 20, 1, [])
    assert_exactly_once([row for page in report.iter_pages() for row in page], 20)
    assert forged["run"]["batch_uid"] not in report.batch_uids
    assert report.complete and report.summary()["pages_unlisted"] == 1
    assert "1 stored pages have no delivery record: not read" in caplog.text


@pytest.mark.parametrize("faults", [False, True])
def test_one_batch_uid_per_input_every_page_read_once(
    emulator: Any, receiver: Receiver, faults: bool
) -> None:
    # The other shape: all pages of an input share its batch uid (10 + 10 + 5 rows per input).
    emulator.configure(callback_batch_uid="input", v4_search_total_results=25)
    if faults:
        emulator.configure(callback_drop_rate=0.3, callback_duplicate_rate=0.3, callback_reorder=True)
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    search = [
        {"linkedin_people_search_url": f"https://www.linkedin.com/search/results/people/?q={i}"}
        for i in range(8)
    ]
    run_uid = run_to_the_end(hook, 0, receiver.url(key), action="linkedin-search-people", items=search)
    records = list_callback_records(hook, run_uid)
    assert len({r.batch_uid for r in records}) == 8  # one batch uid per input, 3 pages each
    emulator.configure(callback_drop_rate=0.0)
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05)
    assert (report.expected, report.received, report.missing, report.ambiguous) == (24, 24, [], [])
    assert (report.replayed > 0) is faults
    rows = [row for page in report.iter_pages() for row in page]
    assert len(rows) == 8 * 25
    assert len({json.dumps(row, sort_keys=True) for row in rows}) == 8 * 25  # none twice
    report.check("fail")


def test_custom_data_added_to_rows_without_it(receiver: Receiver) -> None:
    from airflow_provider_captaindata.callbacks.storage import CallbackStore

    store = CallbackStore(receiver.storage)
    key, run = uuid.uuid4().hex[:24], str(uuid.uuid4())
    pages = {
        "00000000-0000-4000-8000-000000000002": {"custom_data": {"crm": 2}, "results": [{"a": 1}]},
        "00000000-0000-4000-8000-000000000001": {
            "custom_data": {"crm": 1},
            "results": [{"a": 2, "custom_data": {"own": True}}, {"a": 3}],
        },
        "00000000-0000-4000-8000-000000000003": {"custom_data": None, "results": [], "error": {"label": "X"}},
    }
    for batch, body in pages.items():
        store.write_page(key, run, batch, json.dumps(body).encode())

    class Delivered:
        """The three pages' delivery records, as the API lists them (one call, no more)."""

        def list_run_callbacks(self, run_uid: str, limit: int, offset: int, sort: str) -> list[Any]:
            return [
                {"uid": str(uuid.uuid4()), "batch_uid": batch, "status": "SUCCESS", "created_at": "1"}
                for batch in pages
            ][offset:]

        def replay_run_callback(self, callback_uid: str) -> Any:
            raise AssertionError("nothing to replay")

    report = reconcile_run(Delivered(), run, key, receiver.storage, replay_wait_seconds=0)
    assert report.unlisted == 0 and report.expected == report.received == 3
    assert list(report.iter_pages()) == [
        [{"a": 2, "custom_data": {"own": True}}, {"a": 3, "custom_data": {"crm": 1}}],
        [{"a": 1, "custom_data": {"crm": 2}}],
        [],
    ]
    assert report.rows == 3 and report.pages_with_error == 1


def test_invalid_ids_are_refused(receiver: Receiver) -> None:
    with pytest.raises(ValueError):
        reconcile_run(CaptainDataHook(), "../../etc", "0" * 24, receiver.storage)
    with pytest.raises(ValueError):
        reconcile_run(CaptainDataHook(), str(uuid.uuid4()), "not-a-key", receiver.storage)
