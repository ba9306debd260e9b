"""Page storage: one file per batch uid, overwritten whole, never built from an unchecked value."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from airflow_provider_captaindata.callbacks.storage import CallbackStore, is_uuid
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from tests.callbacks.conftest import LAUNCH_KEY, callback_body


def test_write_read_and_overwrite(tmp_path: Path) -> None:
    store = CallbackStore((tmp_path / "cb").as_uri())
    run, batch = str(uuid.uuid4()), str(uuid.uuid4())
    first = json.dumps(callback_body(run, batch, rows=1)).encode()
    path = store.write_page(LAUNCH_KEY, run, batch, first)
    assert path == f"{tmp_path}/cb/{LAUNCH_KEY}/{run}/{batch}.json"
    assert store.read_page(LAUNCH_KEY, run, batch) == json.loads(first)

    second = json.dumps(callback_body(run, batch, rows=3)).encode()
    store.write_page(LAUNCH_KEY, run, batch, second)  # a duplicate or replay: same file
    files = [p for p in (tmp_path / "cb").rglob("*") if p.is_file()]
    assert files == [Path(path)]  # no temporary file left behind
    assert len(store.read_page(LAUNCH_KEY, run, batch)["results"]) == 3


def test_batch_uids_sorted_lowercase_and_pages_only(tmp_path: Path) -> None:
    store = CallbackStore(str(tmp_path))  # a bare path means file://
    run = str(uuid.uuid4())
    batches = [str(uuid.uuid4()) for _ in range(5)]
    for batch in batches:
        store.write_page(LAUNCH_KEY, run.upper(), batch.upper(), b"{}")
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
    bodies = [json.dumps(callback_body(run, batch, rows=50 + i)).encode() for i in range(8)]
    threads = [threading.Thread(target=store.write_page, args=(LAUNCH_KEY, run, batch, b)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    page = store.read_page(LAUNCH_KEY, run, batch)  # parses: never a torn file
    assert json.dumps(page).encode() in bodies
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
    store.write_page(LAUNCH_KEY, run, batches[0], json.dumps(callback_body(run, batches[0], rows=4)).encode())
    assert store.batch_uids(LAUNCH_KEY, run) == batches
    assert len(store.read_page(LAUNCH_KEY, run, batches[0])["results"]) == 4
    names = [p.rsplit("/", 1)[-1] for p in store.fs.ls(store.run_folder(LAUNCH_KEY, run), detail=False)]
    assert sorted(names) == [f"{b}.json" for b in batches]  # no temporary object left
    assert store.batch_uids(LAUNCH_KEY, str(uuid.uuid4())) == []


def test_local_paths_need_no_airflow(tmp_path: Path) -> None:
    assert CallbackStore(tmp_path.as_uri())._root == str(tmp_path)
    assert CallbackStore(f"file://localhost{tmp_path}")._root == str(tmp_path)
    assert CallbackStore(str(tmp_path)).local
