"""Where received callback pages live: one file per page, keyed so that a page can never double.

Layout under the ``callback_storage`` URI (any ObjectStoragePath; ``file://`` for one machine)::

    {callback_storage}/{launch_key}/{run_uid}/{batch_uid}.{digest}.json   the whole callback body

``digest`` is a hash of the page's content (everything but ``run``, whose status may differ
between deliveries). A duplicate delivery or a replay of the same page has the same batch uid
and content, so it overwrites the file instead of adding one; several different pages under
one batch uid (when a batch uid names an input rather than a page) each keep their own file.
Files named ``{batch_uid}.json``, from earlier versions, are read as one page each.

Each page is written under a temporary name and then moved over the final name, so a reader
(the reconciliation) never sees half a page. On a local disk the file and its folder are
fsynced before the receiver answers 2xx, so an acknowledged page survives a crash; object
stores make a finished upload durable themselves.

Every path segment is validated first (launch key: 24 hex; run and batch uids: UUIDs), so no
path is ever built from a value the sender chose freely.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_provider_captaindata.callbacks.tokens import is_launch_key
from airflow_provider_captaindata.exceptions import CaptainDataConfigError

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
PAGE_SUFFIX = ".json"
DIGEST_CHARS = 16
_PAGE_NAME_RE = re.compile(
    r"(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.[0-9a-f]{16})?)\.json"
)


def is_uuid(value: object) -> bool:
    """The canonical 8-4-4-4-12 hex form only (``uuid.UUID`` would also accept braces and urns)."""
    return isinstance(value, str) and UUID_RE.fullmatch(value) is not None


def page_digest(body: Any) -> str:
    """16 hex characters naming a page's content: the same page delivered again, with another
    ``run.status`` say, gets the same digest; a different page of the same batch another."""
    content = {k: v for k, v in body.items() if k != "run"} if isinstance(body, dict) else body
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def batch_of(page_id: str) -> str:
    """The batch uid of a stored page id (``{batch_uid}`` or ``{batch_uid}.{digest}``)."""
    return page_id.split(".", 1)[0]


def normalize_uuid(value: object) -> str:
    """A UUID in lowercase, the form used in paths; ``ValueError`` for anything else."""
    if not is_uuid(value):
        raise ValueError("not a UUID")
    return str(value).lower()


class CallbackStore:
    """Reads and writes callback pages under one storage URI.

    Blocking (file or network I/O): the receiver calls it from a worker thread.
    """

    def __init__(self, uri: str) -> None:
        if not isinstance(uri, str) or not uri.strip():
            raise CaptainDataConfigError(
                "callback_storage is not set: give the receiver a storage URI such as "
                "file:///var/lib/captaindata-callbacks or s3://bucket/captaindata-callbacks."
            )
        self.uri = uri.strip()
        local = _local_folder(self.uri)
        self.fs: Any = None
        if local is not None:
            # A local folder needs no Airflow import: the standalone receiver starts in a second.
            self.local = True
            self._root = local
            return
        from airflow_provider_captaindata.results import object_storage_path

        root = object_storage_path(self.uri)
        self.fs = root.fs
        self._root = str(root.path).rstrip("/") or "/"
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        self.local = "file" in protocols or "local" in protocols

    def __repr__(self) -> str:
        return f"CallbackStore({self.uri!r})"

    # -- paths -------------------------------------------------------------------------------

    def run_folder(self, launch_key: str, run_uid: str) -> str:
        if not is_launch_key(launch_key):
            raise ValueError("launch_key must be 24 lowercase hex characters")
        return f"{self._root.rstrip('/')}/{launch_key}/{normalize_uuid(run_uid)}"

    def page_path(self, launch_key: str, run_uid: str, page_id: str) -> str:
        """The file of a page id: ``{batch_uid}.{digest}`` (or a bare batch uid, older layout)."""
        batch, _, digest = page_id.partition(".")
        if digest and re.fullmatch(r"[0-9a-f]{16}", digest) is None:
            raise ValueError("not a page id")
        name = normalize_uuid(batch) + (f".{digest}" if digest else "")
        return f"{self.run_folder(launch_key, run_uid)}/{name}{PAGE_SUFFIX}"

    # -- writing -----------------------------------------------------------------------------

    def write_page(
        self,
        launch_key: str,
        run_uid: str,
        batch_uid: str,
        data: bytes | bytearray,
        body: Any = None,
        *,
        digest: str | None = None,
    ) -> str:
        """Store one page durably, replacing any earlier copy of it; returns its path.

        ``digest`` (:func:`page_digest` of the body) or ``body`` (``data`` parsed), when the
        caller has them, save parsing ``data`` again."""
        folder = self.run_folder(launch_key, run_uid)
        if digest is None:
            digest = page_digest(json.loads(data) if body is None else body)
        final = self.page_path(launch_key, run_uid, f"{normalize_uuid(batch_uid)}.{digest}")
        if self.local:
            _write_local(folder, final, data)
        else:
            # Object stores have no rename: the move is a server-side copy, and an upload only
            # becomes visible when complete, so neither name is ever seen half written.
            self.fs.makedirs(folder, exist_ok=True)
            temp = f"{folder}/.{normalize_uuid(batch_uid)}.{uuid.uuid4().hex}.tmp"
            self.fs.pipe_file(temp, _upload_body(self.fs, data))
            try:
                self.fs.mv(temp, final)
            finally:
                if self.fs.exists(temp):
                    self.fs.rm(temp)
        return final

    # -- reading -----------------------------------------------------------------------------

    def batch_uids(self, launch_key: str, run_uid: str) -> list[str]:
        """The batch uids stored for a run, sorted."""
        return sorted({batch_of(page) for page in self.page_ids(launch_key, run_uid)})

    def page_ids(self, launch_key: str, run_uid: str) -> list[str]:
        """The pages stored for a run, ``{batch_uid}.{digest}``, sorted (temporary files are not
        pages)."""
        names = self.list_names(self.run_folder(launch_key, run_uid))
        found = (_PAGE_NAME_RE.fullmatch(name) for name in names)
        return sorted(m.group(1) for m in found if m)

    def read_page(self, launch_key: str, run_uid: str, page_id: str) -> dict[str, Any]:
        path = self.page_path(launch_key, run_uid, page_id)
        page = json.loads(self.read_bytes(path))
        if not isinstance(page, dict):
            raise ValueError(f"{path} does not hold a callback body")
        return page

    def list_names(self, folder: str) -> list[str]:
        """The names of the files in ``folder`` (none when it does not exist), listed afresh."""
        if self.local:
            try:
                return [entry.name for entry in os.scandir(folder)]
            except FileNotFoundError:
                return []
        # s3fs and gcsfs cache directory listings (fsspec's dircache): files written since by
        # the receiver, another process, would never show. Always list afresh.
        self.fs.invalidate_cache(folder)
        try:
            return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    def read_bytes(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as handle:
                return handle.read()
        return bytes(self.fs.cat_file(path))


# s3fs sends a body under this size in one PUT (larger ones are sliced into multipart parts,
# which needs a bytes-like object).
_S3_SINGLE_PUT_BYTES = 100 * 2**20


def _upload_body(fs: Any, data: bytes | bytearray) -> Any:
    """What to give ``fs.pipe_file``: on S3 a reader over ``data`` itself, else ``data``.

    Given bytes, botocore wraps them in a ``BytesIO``, whose buffer aiohttp's payload takes
    with ``getbuffer()`` (a whole copy); ``bytes(bytearray)`` was another. The reader is read
    and sent a chunk at a time instead (on the S3 client's event loop): the upload holds no
    second copy of the page."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if ("s3" in protocols or "s3a" in protocols) and len(data) < _S3_SINGLE_PUT_BYTES:
        return BodyReader(data)
    # Other stores get bytes, as they always did: some take a bytearray for an iterable (the
    # Azure SDK under adlfs streams anything not bytes and without read() item by item: ints).
    return bytes(data)


class BodyReader(io.BytesIO):
    """A read-only, seekable file over a buffer, without copying it (``io.BytesIO`` copies a
    bytearray, and its ``getbuffer()`` copies shared bytes); ``len()`` is the whole size, as
    s3fs and botocore ask it. Each read returns a new bytes object of that chunk only.

    An ``io.BytesIO`` (its own buffer left empty, every read served from ``data``) because
    aiohttp sends a BytesIO from its event loop, where it reads any other file in the loop's
    default executor: up to ``cpu_count() + 4`` threads, each with a malloc arena of its own
    that keeps the chunks it held (0.35 MiB a thread with pages of 110 KB)."""

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0
        self._read_since_seek = False

    def __len__(self) -> int:
        return self._view.nbytes

    def getbuffer(self) -> memoryview:
        # A view of its own: aiohttp releases what it gets here once it has the size.
        return self._view[:]

    def getvalue(self) -> bytes:
        return bytes(self._view)

    def writable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        raise io.UnsupportedOperation("BodyReader is read-only")

    def writelines(self, lines: Any) -> None:
        raise io.UnsupportedOperation("BodyReader is read-only")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("BodyReader is read-only")

    def tell(self) -> int:
        # Each pass over the body (botocore's checksum and signature, aiohttp's send) starts
        # with tell(), and ends with a seek back to that start unless it was cut off. s3fs
        # retries a failed put_object with the same object, left wherever the failed attempt
        # stopped reading (at its end, or mid-body when the connection dropped): a pass that
        # starts after reads with no seek since begins the page again, so every attempt sends
        # the whole page under its Content-Length. (After a seek, tell() is exact: botocore
        # measures a body by seeking to its end when it has no len().)
        if self._read_since_seek:
            self._pos = 0
            self._read_since_seek = False
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        self._read_since_seek = False
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = len(self) if size is None or size < 0 else min(len(self), self._pos + size)
        chunk = bytes(self._view[self._pos : end]) if end > self._pos else b""
        self._pos = max(self._pos, end)
        self._read_since_seek = True
        return chunk

    read1 = read

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        self._read_since_seek = True
        return n

    readinto1 = readinto

    # BytesIO's own line reading would read its empty buffer: never an empty page silently.
    def readline(self, size: int | None = -1) -> bytes:
        raise io.UnsupportedOperation("BodyReader reads bytes, not lines")

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        raise io.UnsupportedOperation("BodyReader reads bytes, not lines")

    def __next__(self) -> bytes:
        raise io.UnsupportedOperation("BodyReader reads bytes, not lines")


def _local_folder(uri: str) -> str | None:
    """The absolute folder of a ``file://`` URI or a plain path; None for any other scheme."""
    if "://" not in uri:
        return os.path.abspath(uri)
    parts = urlsplit(uri)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return os.path.abspath(unquote(parts.path) or "/")
    return None


def _write_local(folder: str, final: str, data: bytes | bytearray) -> None:
    created = _makedirs(folder)
    fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)  # atomic on POSIX: readers see the old page or the new one
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    # The rename (and any folder just created) is only durable once the folders are synced.
    for path in (folder, *created):
        _fsync_dir(path)


def _makedirs(folder: str) -> list[str]:
    """Create ``folder`` and its missing parents; return the parents whose entries changed."""
    missing: list[str] = []
    path = folder
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if missing:
        os.makedirs(folder, exist_ok=True)
    return [os.path.dirname(p) for p in missing]


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the file itself is synced
        pass
    finally:
        os.close(fd)
