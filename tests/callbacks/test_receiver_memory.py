"""Issue 22 #4 (from a review): memory per callback in flight is bounded by its body, whatever
its shape.

docs/security.md plans "about 1.5x max_body_bytes per callback in flight"; the issue asks for
"memory per in-flight callback at most 2x its body". The receiver's check built whole every
top-level member but ``results``, and each row: a member or a row holding millions of empty
objects (64 bytes of Python for 3 bytes of JSON) cost 28x the body; and it decoded the body to
one ``str``, 4 bytes a character with one character outside the BMP: 5x the body. Now one value
is at most ``pages.MAX_VALUE_BYTES`` (413 beyond) and the text is read a window at a time.

Real HTTP to a real receiver process (uvicorn), peak RSS (VmHWM) read from /proc.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from tests.callbacks.conftest import LAUNCH_KEY, SECRET

BODY_BYTES = 8 * 1024 * 1024
# Generous: the docs say ~1.5x, the issue 2x; the benchmark target is 3x the largest body.
ALLOWED_GROWTH = 3.0

SERVER = r"""
import socket, sys, uvicorn
from airflow_provider_captaindata.callbacks.app import create_app
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(sock.getsockname()[1], flush=True)
app = create_app(secret=sys.argv[1], storage=sys.argv[2], max_body_bytes=16 * 1024 * 1024)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class ReceiverProcess:
    def __init__(self, storage: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, SECRET, storage.as_uri()],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.base_url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(timeout=120)
        # The socket listens before uvicorn runs: this waits in its backlog. Warm: imports,
        # the first settings read and the first page stored are not counted.
        for _ in range(2):
            assert self.post(self.body(b'"results": [{"a": 1}]')).status_code == 200

    @staticmethod
    def body(members: bytes) -> bytes:
        run = {"run_uid": str(uuid.uuid4()), "batch_uid": str(uuid.uuid4()), "status": "RUNNING"}
        return b'{"run": ' + json.dumps(run).encode() + b", " + members + b"}"

    def post(self, body: bytes) -> httpx.Response:
        return self.http.post(callback_url_for(self.base_url, SECRET, LAUNCH_KEY), content=body)

    def growth_per_body_byte(self, body: bytes) -> tuple[int, float]:
        before = peak_rss(self.process.pid)
        status = self.post(body).status_code
        return status, (peak_rss(self.process.pid) - before) / len(body)

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture
def receiver_process(tmp_path: Path) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(tmp_path / "pages")
    try:
        yield process
    finally:
        process.stop()


def _empty_objects(n_bytes: int) -> bytes:
    return b",".join([b"{}"] * (n_bytes // 3))


def test_a_wide_page_of_rows_stays_within_the_plan(receiver_process: ReceiverProcess) -> None:
    # The control: an ordinary page of this size is within the plan (about 2x measured).
    rows = [{"full_name": "x" * 90, "i": i} for i in range(BODY_BYTES // 110)]
    body = receiver_process.body(b'"results": ' + json.dumps(rows).encode())
    status, growth = receiver_process.growth_per_body_byte(body)
    assert status == 200
    assert growth <= ALLOWED_GROWTH, f"{growth:.1f}x the body"


def test_a_page_with_one_character_outside_the_bmp_stays_within_the_plan(
    receiver_process: ReceiverProcess,
) -> None:
    # The same ordinary page with one emoji in one row: the body's text, decoded whole, is then
    # 4 bytes a character (PEP 393), 4x the body, on top of the body itself.
    rows = [{"full_name": "x" * 90, "i": i} for i in range(BODY_BYTES // 110)]
    rows[0]["full_name"] = "\U0001f600"
    body = receiver_process.body(b'"results": ' + json.dumps(rows, ensure_ascii=False).encode())
    status, growth = receiver_process.growth_per_body_byte(body)
    assert status == 200
    assert growth <= ALLOWED_GROWTH, (
        f"one emoji: {growth:.1f}x the body ({growth * len(body) / 2**20:.0f} MiB)"
    )


def _deep_rows(n_bytes: int) -> bytes:
    row = b'{"a": [' + _empty_objects(30_000) + b"]}"  # 30 KB a row, well within the limit
    return b",".join([row] * (n_bytes // len(row)))


@pytest.mark.parametrize(
    ("members", "expected_status"),
    [
        # One value over pages.MAX_VALUE_BYTES: refused like an oversized body.
        pytest.param((b'"input": [', _empty_objects(BODY_BYTES), b'], "results": []'), 413, id="deep-input"),
        pytest.param((b'"results": [{"a": [', _empty_objects(BODY_BYTES), b"]}]"), 413, id="one-deep-row"),
        # The same objects in rows within the limit: a well-formed page, accepted and stored.
        pytest.param((b'"results": [', _deep_rows(BODY_BYTES), b"]"), 200, id="deep-rows"),
    ],
)
def test_a_page_of_many_small_objects_stays_within_the_plan(
    receiver_process: ReceiverProcess, members: tuple[bytes, bytes, bytes], expected_status: int
) -> None:
    body = receiver_process.body(b"".join(members))
    status, growth = receiver_process.growth_per_body_byte(body)
    assert status == expected_status
    assert growth <= ALLOWED_GROWTH, (
        f"one {len(body) / 2**20:.1f} MiB callback grew the receiver's peak RSS by {growth:.1f}x its body "
        f"({growth * len(body) / 2**20:.0f} MiB)"
    )
