"""The stack's S3 server (SeaweedFS, from ``tests/s3_server.py``) and what the stack does with it:
URIs in its bucket, an s3fs filesystem on it, and the bucket refusing writes (a fault scenario)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from demo_services import HOST, StepFailed

if TYPE_CHECKING:
    from tests.s3_server import SeaweedS3

BUCKET = "captaindata"
S3_CONN_ID = "stack_s3"


def s3_uri(prefix: str) -> str:
    return f"s3://{S3_CONN_ID}@{BUCKET}/{prefix.strip('/')}"


def start_s3(folder: Path, cleanup: contextlib.ExitStack) -> SeaweedS3:
    """A SeaweedFS S3 server with its data in ``folder``; ``cleanup`` stops it."""
    from tests.s3_server import SeaweedS3

    folder.mkdir(parents=True)
    server = SeaweedS3(BUCKET, conn_id=S3_CONN_ID, data_dir=str(folder))
    cleanup.callback(server.stop)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        raise StepFailed(f"the S3 server did not start: {exc}", "read .stack/s3/weed.log") from exc
    return server


def s3_filesystem(server: SeaweedS3) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key=server.access_key,
        secret=server.secret_key,
        client_kwargs={"endpoint_url": server.endpoint_url, "region_name": server.region},
        use_listings_cache=False,
    )


@contextlib.contextmanager
def refusing_writes(server: SeaweedS3) -> Iterator[None]:
    """The bucket read-only in the filer: every S3 write (PUT, copy, delete) is refused."""
    weed_shell(server, f"fs.configure -locationPrefix=/buckets/{BUCKET}/ -readOnly -apply")
    try:
        yield
    finally:
        weed_shell(server, f"fs.configure -locationPrefix=/buckets/{BUCKET}/ -delete -apply")


def weed_shell(server: SeaweedS3, command: str) -> None:
    from tests.s3_server import weed_binary

    assert server.process is not None, "weed shell on a stopped S3 server"
    # The ports weed was started on, read back from its command line (a list of ``-flag=value``).
    args = cast("list[str]", server.process.args)
    flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
    master = f"{HOST}:{flag['-master.port']}.{flag['-master.port.grpc']}"
    filer = f"{HOST}:{flag['-filer.port']}.{flag['-filer.port.grpc']}"
    done = subprocess.run(
        [str(weed_binary()), "shell", f"-master={master}", f"-filer={filer}"],
        input=f"{command}\nexit\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise StepFailed(f"weed shell {command!r} failed: {done.stderr[-500:]}", "read .stack/s3/weed.log")
