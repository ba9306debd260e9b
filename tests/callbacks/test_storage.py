"""Page storage: one file per page, overwritten whole, never built from an unchecked value."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from airflow_provider_captaindata.callbacks.storage import CallbackStore, is_uuid, page_digest
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from tests.callbacks.conftest import LAUNCH_KEY, callback_body


def test_write_read_and_overwrite(tmp_path: Path) -> None:
    store = CallbackStore((tmp_path / "cb").as_uri())
    run, batch = str(uuid.uuid4()), str(uuid.uuid4())
    body = callback_body(run, batch, rows=1)
    page = f"{batch}.{page_digest(body)}"
    path = store.write_page(LAUNCH_KEY, run, batch, json.dumps(body).encode())
    assert path == f"{tmp_path}/cb/{LAUNCH_KEY}/{run}/{page}.json"
    assert store.read_page(LAUNCH_KEY, run, page) == body

    again = {**body, "run": {**body["run"], "status": "SUCCEEDED"}}  # a duplicate or replay
    store.write_page(LAUNCH_KEY, run, batch, json.dumps(again).encode())
    files = [p for p in (tmp_path / "cb").rglob("*") if p.is_file()]
    assert files == [Path(path)]  # the same file; no temporary file left behind
    assert store.read_page(LAUNCH_KEY, run, page)["run"]["status"] == "SUCCEEDED"

    # Another page under the same batch uid (a batch uid naming an input): its own file.
    other = callback_body(run, batch, rows=3)
    store.write_page(LAUNCH_KEY, run, batch, json.dumps(other).encode())
    assert store.page_ids(LAUNCH_KEY, run) == sorted([page, f"{batch}.{page_digest(other)}"])
    assert store.batch_uids(LAUNCH_KEY, run) == [batch]


def test_pages_of_the_earlier_layout_are_read(tmp_path: Path) -> None:
    store = CallbackStore(tmp_path.as_uri())
    run, batch = str(uuid.uuid4()), str(uuid.uuid4())
    folder = tmp_path / LAUNCH_KEY / run
    folder.mkdir(parents=True)
    (folder / f"{batch}.json").write_text(json.dumps(callback_body(run, batch, rows=2)))
    assert store.page_ids(LAUNCH_KEY, run) == [batch]
    assert len(store.read_page(LAUNCH_KEY, run, batch)["results"]) == 2


def test_batch_uids_sorted_lowercase_and_pages_only(tmp_path: Path) -> None:
    store = CallbackStore(str(tmp_path))  # a bare path means file://
    run = str(uuid.uuid4())
    batches = [str(uuid.uuid4()) for _ in range(5)]
    for batch in batches:
        store.write_page(LAUNCH_KEY, run.upper(), batch.upper(), b"{}")
    (tmp_path / LAUNCH_KEY / run / f"{batches[0]}.0123.json").write_text("{}")  # not a page name
    folder = tmp_path / LAUNCH_KEY / run
    (folder / ".half-written.tmp").write_bytes(b"{")
    (folder / "notes.txt").write_text("not a page")
    assert store.batch_uids(LAUNCH_KEY, run) == sorted(batches)
    assert store.batch_uids(LAUNCH_KEY, str(uuid.uuid4())) == []  # no folder yet: no pages


@pytest.mark.parametrize(
    ("launch_key", "run_uid", "batch_uid"),
    [
        ("../" * 8, str(uuid.uuid4()), str(uuid.uuid4())),
        (LAUNCH_KEY, "../../etc", str(uuid.uuid4())),
        (LAUNCH_KEY, str(uuid.uuid4()), "../../../../tmp/x"),
        (LAUNCH_KEY, str(uuid.uuid4()), "{" + str(uuid.uuid4()) + "}"),
        (LAUNCH_KEY, str(uuid.uuid4()), str(uuid.uuid4()).replace("-", "")),
    ],
)
def test_invalid_ids_build_no_path(tmp_path: Path, launch_key: str, run_uid: str, batch_uid: str) -> None:
    store = CallbackStore(tmp_path.as_uri())
    with pytest.raises(ValueError):
        store.write_page(launch_key, run_uid, batch_uid, b"{}")
    assert list(tmp_path.iterdir()) == []


def test_uuid_check() -> None:
    assert is_uuid(str(uuid.uuid4()))
    assert is_uuid(str(uuid.uuid4()).upper())
    assert not is_uuid(None)
    assert not is_uuid(str(uuid.uuid4()) + "\n")
    assert not is_uuid("urn:uuid:" + str(uuid.uuid4()))


def test_concurrent_writes_of_one_page_leave_one_whole_file(tmp_path: Path) -> None:
    store = CallbackStore(tmp_path.as_uri())
    run, batch = str(uuid.uuid4()), str(uuid.uuid4())
    page = callback_body(run, batch, rows=500)
    statuses = ["RUNNING", "SUCCEEDED", "FAILED", "STOPPED"] * 2  # deliveries of one page
    bodies = [json.dumps({**page, "run": {**page["run"], "status": s}}).encode() for s in statuses]
    threads = [threading.Thread(target=store.write_page, args=(LAUNCH_KEY, run, batch, b)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = store.read_page(LAUNCH_KEY, run, f"{batch}.{page_digest(page)}")  # never a torn file
    assert json.dumps(stored).encode() in bodies
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_missing_or_unknown_storage_is_a_config_error() -> None:
    with pytest.raises(CaptainDataConfigError, match="callback_storage"):
        CallbackStore("")
    with pytest.raises(CaptainDataConfigError, match="scheme"):
        CallbackStore("nosuchscheme://bucket/x")


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_object_store_branch_through_fsspec(tmp_path: Path, protocol: str) -> None:
    # The branch used for s3://, gs://, ... : upload under a temporary name, then move. Driven
    # here through real fsspec filesystems (Airflow registers no memory:// scheme).
    import fsspec

    store = CallbackStore(tmp_path.as_uri())
    store.local = False
    store.fs = fsspec.filesystem(protocol)
    store._root = f"/bucket-{uuid.uuid4().hex[:8]}/cb" if protocol == "memory" else str(tmp_path / "cb")
    run = str(uuid.uuid4())
    batches = sorted(str(uuid.uuid4()) for _ in range(3))
    for batch in batches:
        store.write_page(LAUNCH_KEY, run, batch, json.dumps(callback_body(run, batch, rows=1)).encode())
    again = callback_body(run, batches[0], rows=4)
    store.write_page(LAUNCH_KEY, run, batches[0], json.dumps(again).encode())
    again["run"]["status"] = "SUCCEEDED"
    store.write_page(LAUNCH_KEY, run, batches[0], json.dumps(again).encode())  # the same page
    assert store.batch_uids(LAUNCH_KEY, run) == batches
    assert len(store.page_ids(LAUNCH_KEY, run)) == 4
    page = f"{batches[0]}.{page_digest(again)}"
    assert store.read_page(LAUNCH_KEY, run, page)["run"]["status"] == "SUCCEEDED"
    names = [p.rsplit("/", 1)[-1] for p in store.fs.ls(store.run_folder(LAUNCH_KEY, run), detail=False)]
    assert sorted(names) == [f"{p}.json" for p in store.page_ids(LAUNCH_KEY, run)]  # no temporary left
    assert store.batch_uids(LAUNCH_KEY, str(uuid.uuid4())) == []


def test_local_paths_need_no_airflow(tmp_path: Path) -> None:
    assert CallbackStore(tmp_path.as_uri())._root == str(tmp_path)
    assert CallbackStore(f"file://localhost{tmp_path}")._root == str(tmp_path)
    assert CallbackStore(str(tmp_path)).local
