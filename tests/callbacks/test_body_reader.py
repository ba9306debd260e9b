"""What the callback receiver hands an object store: the whole page on every attempt, as bytes
where a store needs bytes (no second copy on S3, see BodyReader)."""

from __future__ import annotations

import json
import threading
import uuid

import fsspec.asyn
import s3fs

from airflow_provider_captaindata.callbacks.storage import BodyReader
from tests.callbacks.conftest import callback_body
from tests.s3_server import SeaweedS3


def test_a_body_reader_left_mid_body_by_a_failed_attempt_is_sent_whole_again(s3_server: SeaweedS3) -> None:
    # s3fs retries put_object with the same body object (_error_wrapper). An attempt that
    # failed mid-body (a reset while sending, botocore's own retries used up) leaves the reader
    # part-way, not at its end: tell() then does not rewind, so the next attempt's checksum,
    # signature and aiohttp payload all start mid-page while Content-Length is len() (whole).
    fs = s3fs.S3FileSystem(
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        endpoint_url=s3_server.endpoint_url,
        client_kwargs={"region_name": s3_server.region},
        config_kwargs={"read_timeout": 3, "connect_timeout": 3, "retries": {"max_attempts": 2}},
        skip_instance_cache=True,
    )
    fs.retries = 1  # one s3fs attempt: what the reader gives it is what is stored, or an error
    data = bytearray(json.dumps(callback_body(rows=2_000)).encode())
    reader = BodyReader(data)
    reader.read(len(data) // 2)  # what a send cut off half-way leaves
    path = f"{s3_server.bucket}/review2-{uuid.uuid4().hex[:8]}/page.json"
    fs.pipe_file(path, reader)
    assert fs.cat_file(path) == data


def test_a_page_for_a_non_s3_object_store_is_not_handed_over_as_a_bytearray() -> None:
    # Before 7d3e960 every remote store got bytes(bytearray). Now only S3 gets a reader, and
    # every other protocol gets the receiver's bytearray as it is. adlfs's _pipe_file passes
    # it to azure-storage-blob's upload_blob(data=value), which streams anything that is not
    # ``bytes`` and has no read() as an iterable (IterStreamer): a bytearray iterates ints,
    # and b"" += int raises TypeError, so every page stored to abfs:// fails (the receiver
    # answers 500 to each callback). azure is not installed here: the contract is checked.
    from types import SimpleNamespace

    from airflow_provider_captaindata.callbacks.storage import _upload_body

    data = bytearray(b'{"results": []}')
    for protocol in (("abfs", "az"), ("gcs", "gs"), "memory"):
        body = _upload_body(SimpleNamespace(protocol=protocol), data)
        assert not isinstance(body, bytearray), f"{protocol}: the receiver's bytearray is handed to pipe_file"


def test_an_upload_reads_the_page_on_the_s3_clients_event_loop_only(s3_server: SeaweedS3) -> None:
    # aiohttp reads a file body in its event loop's default executor, a pool of up to
    # cpu_count() + 4 threads (an io.BytesIO it reads on the loop). Each of those threads gets
    # a malloc arena of its own, which keeps the chunks it held: with 8 callbacks in flight the
    # API server grew about 0.5 MiB more per callback than with 2 (benchmark 7's server).
    readers: set[int] = set()

    class Recording(BodyReader):
        def read(self, size: int | None = -1) -> bytes:
            readers.add(threading.get_ident())
            return super().read(size)

    fs = s3fs.S3FileSystem(
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        endpoint_url=s3_server.endpoint_url,
        client_kwargs={"region_name": s3_server.region},
        skip_instance_cache=True,
    )
    data = bytearray(json.dumps(callback_body(rows=2_000)).encode())
    path = f"{s3_server.bucket}/loop-{uuid.uuid4().hex[:8]}/page.json"
    fs.pipe_file(path, Recording(data))
    assert fs.cat_file(path) == data
    loop_thread = fsspec.asyn.iothread[0]
    assert loop_thread is not None
    assert readers == {loop_thread.ident}, "the page was read in a thread pool"
