"""Checking a callback body without building it: memory per callback stays near twice its size.

``json.loads`` of a 10 MiB page of rows builds ~30 times its size in Python objects, and the
digest (:func:`~.storage.page_digest`) dumped it all again: one 10 MiB callback cost ~310 MiB
of API-server memory. :func:`scan_callback` reads the body's text once, member by member of
the top-level object and row by row of ``results`` (with the standard library's C scanner),
keeping one row at a time: the body's bytes, its text, and one row. It computes the same
digest as :func:`~.storage.page_digest` (the canonical JSON of everything but ``run``, fed to
SHA-256 piece by piece), so pages stored by earlier versions keep their names.

Text is decoded as UTF-8 (RFC 8259); a body whose text needs 4 bytes per character for a
character outside the Basic Multilingual Plane costs up to 4 times its size as text, still
one copy.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_captaindata.callbacks.storage import DIGEST_CHARS, is_uuid

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_SCAN_STRING = json.decoder.scanstring  # type: ignore[attr-defined]


class BadCallback(ValueError):
    """The body is not a callback; the message names the problem, never a value."""


@dataclass(frozen=True)
class ScannedPage:
    run_uid: str
    batch_uid: str
    status: str
    rows: int
    digest: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _ws(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _expect(text: str, i: int, char: str) -> int:
    if i >= len(text) or text[i] != char:
        raise BadCallback("the body is not JSON")
    return i + 1


def _rows(text: str, i: int, hasher: Any | None) -> tuple[int, int]:
    """Check the array at ``text[i]`` holds objects only, one row built at a time; return the
    index after it and the number of rows (and feed their canonical form to ``hasher``)."""
    i = _ws(text, _expect(text, i, "["))
    count = 0
    if hasher:
        hasher.update(b"[")
    if i < len(text) and text[i] == "]":
        if hasher:
            hasher.update(b"]")
        return i + 1, 0
    while True:
        row, i = _DECODER.raw_decode(text, i)
        if not isinstance(row, dict):
            raise BadCallback("'results' must be a list of objects")
        if hasher:
            hasher.update((b"," if count else b"") + _canonical(row).encode())
        count += 1
        del row
        i = _ws(text, i)
        if i < len(text) and text[i] == ",":
            i = _ws(text, i + 1)
            continue
        i = _expect(text, i, "]")
        if hasher:
            hasher.update(b"]")
        return i, count


def _members(text: str) -> dict[str, tuple[int, int]]:
    """The span of each top-level member's value (the last one of a repeated key, as
    ``json.loads`` keeps); large values are walked, not built (``results``: row by row)."""
    i = _ws(text, 0)
    if not text.startswith("{", i):
        _DECODER.raw_decode(text, i)  # not JSON at all: ValueError; JSON but not an object:
        raise BadCallback("the body must be a JSON object")
    i = _ws(text, i + 1)
    spans: dict[str, tuple[int, int]] = {}
    if i < len(text) and text[i] == "}":
        i += 1
    else:
        while True:
            i = _expect(text, i, '"')
            key, i = _SCAN_STRING(text, i)
            i = _ws(text, _expect(text, _ws(text, i), ":"))
            start = i
            if key == "results" and text.startswith("[", i):
                i, _ = _rows(text, i, None)
            else:
                value, i = _DECODER.raw_decode(text, i)
                del value
            spans[key] = (start, i)
            i = _ws(text, i)
            if i < len(text) and text[i] == ",":
                i = _ws(text, i + 1)
                continue
            i = _expect(text, i, "}")
            break
    if _ws(text, i) != len(text):
        raise BadCallback("the body is not JSON")
    return spans


def scan_callback(data: bytes | bytearray) -> ScannedPage:
    """Check a callback body ``{run{run_uid, batch_uid, status}, input, custom_data, error,
    results_count, results[]}``; return its ids, row count and content digest."""
    try:
        text = data.decode("utf-8")
        spans = _members(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, BadCallback):
            raise
        raise BadCallback("the body is not JSON") from None

    def value(name: str) -> Any:
        span = spans.get(name)
        return None if span is None else _DECODER.raw_decode(text, span[0])[0]

    run = value("run")
    if not isinstance(run, dict):
        raise BadCallback("'run' must be an object with run_uid, batch_uid and status")
    for name in ("run_uid", "batch_uid"):
        if not is_uuid(run.get(name)):
            raise BadCallback(f"'run.{name}' must be a UUID")
    if not isinstance(run.get("status"), str) or not run["status"]:
        raise BadCallback("'run.status' must be a string")
    count = value("results_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise BadCallback("'results_count' must be a non-negative integer")
    custom = value("custom_data")
    if custom is not None and not isinstance(custom, dict):
        raise BadCallback("'custom_data' must be an object")
    results_span = spans.get("results")
    not_a_list = results_span is not None and not text.startswith("[", results_span[0])
    if not_a_list and value("results") is not None:
        raise BadCallback("'results' must be a list of objects")

    # The digest: json.dumps(content minus run, sort_keys=True, compact), piece by piece.
    hasher = hashlib.sha256(b"{")
    rows = 0
    for n, key in enumerate(sorted(k for k in spans if k != "run")):
        hasher.update((b"," if n else b"") + _canonical(key).encode() + b":")
        start = spans[key][0]
        if key == "results" and text.startswith("[", start):
            _, rows = _rows(text, start, hasher)
        else:
            hasher.update(_canonical(_DECODER.raw_decode(text, start)[0]).encode())
    hasher.update(b"}")
    return ScannedPage(
        run_uid=run["run_uid"].lower(),
        batch_uid=run["batch_uid"].lower(),
        status=run["status"],
        rows=rows,
        digest=hasher.hexdigest()[:DIGEST_CHARS],
    )
