"""A real receiver for the tests: uvicorn on 127.0.0.1 (free port) in a thread, real HTTP."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from airflow_provider_captaindata.callbacks.app import create_app
from airflow_provider_captaindata.callbacks.tokens import callback_url_for

SECRET = "test-callback-secret-0123456789abcdef"
LAUNCH_KEY = "0123456789abcdef01234567"


class ServerThread:
    """Serves an ASGI app with uvicorn in a daemon thread; ``stop()`` shuts it down cleanly."""

    def __init__(self, app: Any, port: int = 0, access_log: bool = False) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # log_config=None: uvicorn's loggers propagate, so caplog sees the access log too.
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, log_level="info", access_log=access_log)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class CountingApp:
    """Counts the POSTs reaching the receiver (duplicates and replays included)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.posts = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
        await self.app(scope, receive, send)


@dataclass
class Receiver:
    base_url: str
    folder: Path
    storage: str
    secret: str
    counter: CountingApp | None = None

    @property
    def posts(self) -> int:
        return self.counter.posts if self.counter else 0

    def url(self, launch_key: str = LAUNCH_KEY, **kwargs: Any) -> str:
        return callback_url_for(self.base_url, self.secret, launch_key, **kwargs)

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())


def _receiver(tmp_path: Path, access_log: bool) -> Iterator[Receiver]:
    folder = tmp_path / "callbacks"
    storage = folder.as_uri()
    counter = CountingApp(create_app(secret=SECRET, storage=storage, max_body_bytes=64 * 1024))
    server = ServerThread(counter, access_log=access_log)
    try:
        yield Receiver(server.base_url, folder, storage, SECRET, counter)
    finally:
        server.stop()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A receiver storing under ``tmp_path/callbacks`` (64 KiB body limit)."""
    yield from _receiver(tmp_path, access_log=False)


@pytest.fixture
def logged_receiver(tmp_path: Path) -> Iterator[Receiver]:
    """The same with uvicorn's access log on (to check what it shows)."""
    yield from _receiver(tmp_path, access_log=True)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def callback_body(
    run_uid: str | None = None,
    batch_uid: str | None = None,
    rows: int = 2,
    status: str = "RUNNING",
    custom_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A callback body of the documented shape."""
    batch = batch_uid or str(uuid.uuid4())
    return {
        "run": {"run_uid": run_uid or str(uuid.uuid4()), "batch_uid": batch, "status": status},
        "input": {"linkedin_profile_url": "https://www.linkedin.com/in/someone"},
        "custom_data": custom_data,
        "error": None,
        "results_count": rows,
        "results": [{"full_name": f"Person {batch[:8]} {i}", "index": i} for i in range(rows)],
    }
