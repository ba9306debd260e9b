"""Checking a callback body without building it: memory per callback stays near its size.

``json.loads`` of a 10 MiB page of rows builds ~30 times its size in Python objects, and the
digest (:func:`~.storage.page_digest`) dumped it all again: one 10 MiB callback cost ~310 MiB
of API-server memory. :func:`scan_callback` reads the body once, member by member of the
top-level object and row by row of ``results``, with the standard library's C scanner.

What a callback in flight holds (issue 22), whatever the body's shape:

* its bytes (the caller's);
* one window of its text: at most ``WINDOW_BYTES`` of the body decoded at a time, never the
  whole body as one ``str`` (a single character outside the Basic Multilingual Plane makes such
  a text 4 bytes per character, 4 times the body);
* one built value: each row of ``results`` and each other top-level member's value must fit
  in ``MAX_VALUE_BYTES`` of JSON, else the body is refused (``ValueTooLarge``, answered 413):
  a member of millions of ``{}`` costs 64 bytes of Python per 3 bytes of JSON when built;
* at most ``MAX_MEMBERS`` top-level members, keys of at most ``MAX_KEY_CHARS`` characters,
  values nested at most ``MAX_DEPTH`` levels (so that a task can read every accepted page,
  whatever its stack's depth).

It computes the same digest as :func:`~.storage.page_digest` (the canonical JSON of everything
but ``run``, fed to SHA-256 piece by piece), so pages stored by earlier versions keep their names.
Text is UTF-8 (RFC 8259).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_captaindata.callbacks.storage import DIGEST_CHARS, is_uuid

MAX_VALUE_BYTES = 256 * 1024  # of JSON in one built value: a row, or a member but 'results'
# Of the body decoded at once (one refill per window, not per row). No larger than the value
# limit: a value cut by the window's end is built up to it before the decoder finds the cut
# (~28x for a run of empty objects), so the window bounds that too. 1 MiB was no faster.
WINDOW_BYTES = MAX_VALUE_BYTES
MAX_MEMBERS = 64  # top-level members, repeated keys included (a callback has six)
MAX_KEY_CHARS = 256
# Levels of arrays and objects in one value. json.loads' limit is the caller's remaining
# recursion budget: a page the receiver's shallow checking thread could build, a task reading
# it from a deeper stack could not. A bound of its own makes every accepted page readable.
MAX_DEPTH = 64
KNOWN_MEMBERS = ("run", "input", "custom_data", "error", "results_count", "results")

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")
_DECODER = json.JSONDecoder()
# A number's end is seen one character past it, and "1.5e" + "7" can only be told from "1.5"
# (then "e" as a syntax error) two characters further: a value must end this many characters
# before a window's end, or be reread from a window starting at it.
_LOOKAHEAD = 3
_SLACK = 8  # bytes past MAX_VALUE_BYTES in a window for a value: lookahead, a cut character
_TOKEN_CHARS = 10  # an error this near a window's end may be a token cut by it ("-Infinity")


class BadCallback(ValueError):
    """The body is not a callback; the message names the problem, never a value."""


class ValueTooLarge(BadCallback):
    """One value of the body is over ``MAX_VALUE_BYTES`` (answered 413, like an oversized body)."""


@dataclass(frozen=True)
class ScannedPage:
    run_uid: str
    batch_uid: str
    status: str
    rows: int
    digest: str


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class _Window:
    """The body's text, a window at a time: ``text[pos:]`` is what is left of the window, which
    holds the body's bytes ``start`` to ``end``. Byte offsets of ``pos`` are worked out only to
    move the window (once per window, not per row) and to note where a member starts."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.load(0)

    def load(self, start: int, size: int = 0) -> None:
        """Decode the window at byte ``start``: ``size`` bytes (``WINDOW_BYTES`` if more), cut
        back to a character's first byte (a UTF-8 continuation byte is 0b10xxxxxx)."""
        self.size = max(size, WINDOW_BYTES)
        end = min(start + self.size, len(self.data))
        for _ in range(3):
            if end < len(self.data) and self.data[end] & 0xC0 == 0x80:
                end -= 1
        self.text = str(self.data[start:end], "utf-8")
        self.start, self.end, self.pos = start, end, 0
        self.final = end == len(self.data)

    def offset(self) -> int:
        """The byte offset of ``text[pos]``."""
        text, pos = self.text, self.pos
        if text.isascii():
            return self.start + pos
        if pos < len(text) // 2:
            return self.start + len(text[:pos].encode())
        return self.end - len(text[pos:].encode())

    def peek(self) -> str:
        """The next character but whitespace ('' at the body's end), the window moved on if need be."""
        while True:
            self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if self.final:
                return ""
            self.load(self.end)

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise BadCallback("the body is not JSON")
        self.pos += 1

    def value(self, what: str) -> Any:
        """Build the JSON value at ``pos`` (at most ``MAX_VALUE_BYTES`` of it) and move past it.
        A value cut by the window's end is read again from a window starting at it, grown up to
        ``MAX_VALUE_BYTES`` if it started there already."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
                if end + _LOOKAHEAD <= len(self.text) or self.final:
                    break
            except json.JSONDecodeError as exc:
                if self.final or not _ran_out(exc, len(self.text)):
                    raise BadCallback("the body is not JSON") from None
            value = None  # built from a cut window: let it go before the reload builds it again
            if self.pos == 0 and self.size >= MAX_VALUE_BYTES + _SLACK:
                raise ValueTooLarge(f"{what} is larger than {MAX_VALUE_BYTES // 1024} KiB")
            self.load(self.offset(), min(2 * self.size, MAX_VALUE_BYTES + _SLACK) if self.pos == 0 else 0)
        # The window may be larger than the limit: measure (bytes only where characters may not do).
        chars = end - self.pos
        if chars > MAX_VALUE_BYTES or (
            4 * chars > MAX_VALUE_BYTES
            and not self.text.isascii()
            and len(self.text[self.pos : end].encode()) > MAX_VALUE_BYTES
        ):
            raise ValueTooLarge(f"{what} is larger than {MAX_VALUE_BYTES // 1024} KiB")
        if _too_deep(self.text, self.pos, end):
            raise BadCallback(f"{what} nests more than {MAX_DEPTH} levels")
        self.pos = end
        return value


def _too_deep(text: str, start: int, end: int) -> bool:
    """Whether the JSON value ``text[start:end]`` nests more than ``MAX_DEPTH`` levels: its
    brackets outside strings, innermost pairs taken away once per level (in C, not per token)."""
    if end - start <= 2 * MAX_DEPTH or text.count("[", start, end) + text.count("{", start, end) <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text[start:end]))
    for _ in range(MAX_DEPTH):
        brackets = _INNERMOST.sub("", brackets)
        if not brackets:
            return False
    return True


def _ran_out(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether the decoder failed at the end of a text of ``length`` characters, which may
    then be a cut, not an error: it stops there, or within a token (``-Infinity``, an escape)
    of it, or it reports where the string it could not end began."""
    return exc.pos >= length - _TOKEN_CHARS or exc.msg.startswith("Unterminated string")


def _name(key: str) -> str:
    """A member's name for a message: an unknown key is the sender's text, never echoed."""
    return f"'{key}'" if key in KNOWN_MEMBERS else "a top-level member"


def _rows(window: _Window, hasher: Any | None) -> int:
    """Walk the array at the window's ``pos``, one row built at a time; return the number of
    rows. With ``hasher``, check they are objects and feed their canonical form to it."""
    window.expect("[")
    count = 0
    if hasher:
        hasher.update(b"[")
    if window.peek() == "]":
        window.pos += 1
    else:
        # The hot loop: rows well inside the window are decoded here; one cut by the window's end
        # (once per window), or long enough to be over the limit, goes the careful way.
        decode, ws, long = _DECODER.raw_decode, _WS.match, MAX_VALUE_BYTES // 4
        text, pos = window.text, window.pos
        while True:
            try:
                row, end = decode(text, pos)
            except ValueError:
                end = len(text)
            if end + _LOOKAHEAD > len(text) or end - pos > long:
                row = None  # one built value at a time: let it go before building it again
                window.pos = pos
                row = window.value("a row of 'results'")
                text, end = window.text, window.pos
            elif _too_deep(text, pos, end):
                raise BadCallback(f"a row of 'results' nests more than {MAX_DEPTH} levels")
            if hasher is not None:
                if not isinstance(row, dict):
                    raise BadCallback("'results' must be a list of objects")
                hasher.update((b"," if count else b"") + _canonical(row).encode())
            count += 1
            del row
            pos = ws(text, end).end()  # type: ignore[union-attr]
            if pos < len(text) and text[pos] == ",":
                pos = ws(text, pos + 1).end()  # type: ignore[union-attr]
                continue
            window.pos = pos
            if window.peek() == ",":  # the whitespace ran to the window's end
                window.pos += 1
                text, pos = window.text, window.pos
                continue
            window.expect("]")
            break
    if hasher:
        hasher.update(b"]")
    return count


def _members(window: _Window) -> dict[str, int]:
    """Walk the top-level object, checking each member's value is JSON (``results``: row by
    row); return the byte offset of each key's last value (``json.loads`` keeps the last)."""
    if window.peek() != "{":
        with contextlib.suppress(ValueTooLarge):  # large or not, it is no callback: 400
            window.value("the body")  # not JSON at all: BadCallback; JSON but not an object:
        raise BadCallback("the body must be a JSON object")
    window.pos += 1
    offsets: dict[str, int] = {}
    if window.peek() == "}":
        window.pos += 1
    else:
        for _ in range(MAX_MEMBERS):
            if window.peek() != '"':
                raise BadCallback("the body is not JSON")
            key = window.value("a top-level key")
            if len(key) > MAX_KEY_CHARS:
                raise BadCallback(f"a top-level key is longer than {MAX_KEY_CHARS} characters")
            window.expect(":")
            window.peek()
            offsets[key] = window.offset()
            if key == "results" and window.peek() == "[":
                _rows(window, None)
            else:
                window.value(_name(key))
            if window.peek() != ",":
                window.expect("}")
                break
            window.pos += 1
        else:
            raise BadCallback(f"the body has more than {MAX_MEMBERS} top-level members")
    if window.peek():
        raise BadCallback("the body is not JSON")
    return offsets


def scan_callback(data: bytes | bytearray) -> ScannedPage:
    """Check a callback body ``{run{run_uid, batch_uid, status}, input, custom_data, error,
    results_count, results[]}``; return its ids, row count and content digest."""
    with memoryview(data) as view:
        try:
            return _scan(_Window(view))
        except BadCallback:
            raise
        except (ValueError, RecursionError):  # UnicodeError too, an unpaired surrogate's included
            raise BadCallback("the body is not JSON") from None


def _scan(window: _Window) -> ScannedPage:
    offsets = _members(window)

    def at(key: str) -> bool:
        """Move the window to ``key``'s value; False if the body has none."""
        if key not in offsets:
            return False
        window.load(offsets[key])
        return True

    run = window.value("'run'") if at("run") else None
    if not isinstance(run, dict):
        raise BadCallback("'run' must be an object with run_uid, batch_uid and status")
    for name in ("run_uid", "batch_uid"):
        if not is_uuid(run.get(name)):
            raise BadCallback(f"'run.{name}' must be a UUID")
    if not isinstance(run.get("status"), str) or not run["status"]:
        raise BadCallback("'run.status' must be a string")
    ids = (run["run_uid"].lower(), run["batch_uid"].lower(), run["status"])
    del run  # one built value at a time: only its ids are kept
    count = window.value("'results_count'") if at("results_count") else None
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise BadCallback("'results_count' must be a non-negative integer")
    if at("custom_data") and not isinstance(window.value("'custom_data'"), dict | None):
        raise BadCallback("'custom_data' must be an object")
    if at("results") and window.peek() != "[" and window.value("'results'") is not None:
        raise BadCallback("'results' must be a list of objects")

    # The digest: json.dumps(content minus run, sort_keys=True, compact), piece by piece.
    hasher = hashlib.sha256(b"{")
    rows = 0
    for n, key in enumerate(sorted(k for k in offsets if k != "run")):
        hasher.update((b"," if n else b"") + _canonical(key).encode() + b":")
        at(key)
        if key == "results" and window.peek() == "[":
            rows = _rows(window, hasher)
        else:
            hasher.update(_canonical(window.value(_name(key))).encode())
    hasher.update(b"}")
    return ScannedPage(*ids, rows=rows, digest=hasher.hexdigest()[:DIGEST_CHARS])
