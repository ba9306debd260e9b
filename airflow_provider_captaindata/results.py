"""Where result rows go: XCom (bounded, never truncated) or a JSON Lines file in object storage.

Rows arrive page by page and are written page by page, so memory stays flat however many
rows a run has. A file is written beside its final path and moved there once complete, so the
path never holds part of a run, a retried task never doubles rows, and two overlapping tries
(a zombie and its successor) never write into one file.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from airflow_provider_captaindata.exceptions import (
    CaptainDataConfigError,
    CaptainDataError,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_XCOM_BYTES = 1_048_576

# One encoder for every file row: json.dumps with options builds a new JSONEncoder per call,
# about a quarter of the time spent writing 100,000 rows.
_encode_line = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


class ResultSink(Protocol):
    rows: int

    def add_page(self, rows: list[dict[str, Any]]) -> None: ...

    def finish(self, **summary: Any) -> Any:
        """Close the sink; return what the task pushes to XCom."""
        ...

    def abort(self) -> None: ...


# The provider's extra that brings each scheme's filesystem (pyproject.toml's extras).
SCHEME_EXTRAS = {"s3": "s3", "s3a": "s3"}
# The error's wording is quoted in docs/troubleshooting.md and docs/results.md (a test compares).
UNAVAILABLE_SCHEME = "output_path {path!r}: the {scheme!r} scheme is not available here ({cause}). "
INSTALL_EXTRA = (
    "Install the provider's {extra!r} extra where tasks run: "
    'pip install "airflow-provider-captaindata[{extra}]", or use file://.'
)
INSTALL_OTHER = (
    "Install the Airflow provider or fsspec package for the {scheme!r} scheme where tasks run, "
    "or use file://."
)


def object_storage_path(output_path: str) -> Any:
    """An ObjectStoragePath for ``output_path``, checked to be writable by this installation."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    if not isinstance(output_path, str) or not output_path.strip():
        raise CaptainDataConfigError(f"output_path must be a path or URI string, got {output_path!r}")
    if "://" not in output_path:
        output_path = "file://" + output_path
    try:
        path = ObjectStoragePath(output_path)
        path.fs  # noqa: B018 - resolving the filesystem is the check: unknown schemes fail here
    except Exception as exc:
        scheme = output_path.split("://", 1)[0]
        extra = SCHEME_EXTRAS.get(scheme.lower())
        hint = unsupported_pathlib_hint() or (
            INSTALL_EXTRA.format(extra=extra) if extra else INSTALL_OTHER.format(scheme=scheme)
        )
        cause = f"{type(exc).__name__}: {exc}"
        raise CaptainDataConfigError(
            UNAVAILABLE_SCHEME.format(path=output_path, scheme=scheme, cause=cause) + hint
        ) from None
    return path


def instance_output_path(output_path: str | None, map_index: int | None) -> str | None:
    """The object one task instance writes: ``output_path`` itself, or for a mapped instance
    (``map_index`` >= 0) the path with ``.map-{map_index}`` before its last suffix
    (``out.jsonl`` -> ``out.map-3.jsonl``), so that mapped instances never move their files
    onto one object, whatever ``output_path`` renders to."""
    if not output_path or map_index is None or map_index < 0:
        return output_path
    head, slash, name = output_path.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    tag = f".map-{map_index}"
    named = f"{stem}{tag}.{suffix}" if dot and stem else f"{name}{tag}"
    return f"{head}{slash}{named}"


def unsupported_pathlib_hint(airflow: str | None = None, pathlib: str | None = None) -> str | None:
    """What to pin when the installed universal-pathlib is one this Airflow cannot use: Airflow
    3.0 allows universal-pathlib 0.3, with which every ObjectStoragePath fails (from 3.1 on,
    Airflow's own requirements pick a working version)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        airflow = airflow or version("apache-airflow")
        pathlib = pathlib or version("universal-pathlib")
    except PackageNotFoundError:
        return None

    def major_minor(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())

    if major_minor(airflow) == (3, 0) and major_minor(pathlib) >= (0, 3):
        return (
            f"universal-pathlib {pathlib} is not supported by Airflow {airflow}: "
            "pin universal-pathlib<0.3 (see the install docs)."
        )
    return None


class XComRows:
    """Collects rows for XCom, refusing (never truncating) past ``max_bytes`` of JSON."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_XCOM_BYTES) -> None:
        self.max_bytes = max_bytes
        self.rows = 0
        self._bytes = 2
        self._items: list[dict[str, Any]] = []

    def add_page(self, rows: list[dict[str, Any]]) -> None:
        self._bytes += sum(len(json.dumps(r, separators=(",", ":"), default=str)) + 1 for r in rows)
        if self._bytes > self.max_bytes:
            raise CaptainDataError(
                f"The results exceed max_xcom_bytes ({self.max_bytes} bytes) after {self.rows + len(rows)} "
                "rows: XCom is not meant for large data. Set output_path (e.g. 's3://bucket/captaindata/"
                "{{ run_id }}.jsonl' or 'file:///data/...') to stream them to object storage, or raise "
                "max_xcom_bytes."
            )
        self._items.extend(rows)
        self.rows += len(rows)

    def finish(self, **summary: Any) -> list[dict[str, Any]]:
        return self._items

    def abort(self) -> None:
        self._items = []


class JsonLinesFile:
    """Streams rows to one JSON Lines file through Airflow's ObjectStoragePath."""

    def __init__(self, output_path: str) -> None:
        self.path = object_storage_path(output_path)
        # Hidden and unique: a glob for the outputs skips it, and no other try shares it.
        self.partial_path = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.partial"
        self.rows = 0
        self._file: Any = None

    def add_page(self, rows: list[dict[str, Any]]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.partial_path.open("w", encoding="utf-8")
        if rows:
            self._file.write("".join(_encode_line(r) + "\n" for r in rows))
            self.rows += len(rows)

    def finish(self, **summary: Any) -> dict[str, Any]:
        if self._file is None:  # no rows at all: still leave an (empty) file for the next task
            self.add_page([])
        self._file.close()
        self._file = None
        self.partial_path.rename(self.path)
        log.info("Wrote %s rows to %s", self.rows, self.path)
        return {"path": str(self.path), "rows": self.rows, **summary}

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            try:
                self.partial_path.unlink(missing_ok=True)
            except OSError as exc:  # the task's own error matters more: keep it, say this
                log.warning("Could not remove the partial file %s: %s", self.partial_path, exc)


@contextmanager
def aborted_on_error(sink: ResultSink) -> Iterator[ResultSink]:
    """The sink, aborted if the block raises: a failed try leaves no partial file behind."""
    try:
        yield sink
    except BaseException:
        sink.abort()
        raise


def open_sink(output_path: str | None, *, max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES) -> ResultSink:
    """A JSON Lines file when ``output_path`` is set, else bounded XCom rows."""
    return JsonLinesFile(output_path) if output_path else XComRows(max_xcom_bytes)
