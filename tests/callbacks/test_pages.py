"""The streaming check of a callback body: same verdicts and digest as parsing it whole, and
memory near the body (issue 22 #4: one 10 MiB callback cost ~310 MiB), whatever its shape
(random bodies against parsing whole: test_pages_property.py)."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
import uuid
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks import pages
from airflow_provider_captaindata.callbacks.pages import BadCallback, ValueTooLarge, scan_callback
from airflow_provider_captaindata.callbacks.storage import page_digest
from tests.callbacks.conftest import callback_body


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(10**12), 10**12)
    if kind == 3:
        return rng.uniform(-1e6, 1e6)
    if kind == 4:
        return "".join(rng.choice('aé🙂"\\\n z') for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        return {
            random_value(rng, 9) if False else f"k{rng.randrange(9)}é": random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))
        }
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_digest_and_ids_match_parsing_whole() -> None:
    body = callback_body(rows=50, custom_data={"crm": "é🙂", "n": 1.5})
    for text in (json.dumps(body), json.dumps(body, indent=2, ensure_ascii=False), json.dumps(body)[::1]):
        page = scan_callback(text.encode())
        assert page.digest == page_digest(json.loads(text))
        assert (page.run_uid, page.batch_uid, page.rows) == (
            body["run"]["run_uid"],
            body["run"]["batch_uid"],
            50,
        )


def test_digest_is_page_digest_for_any_content() -> None:
    rng = random.Random(22)
    for _ in range(300):
        body = {f"x{i}": random_value(rng) for i in range(rng.randrange(4))}
        body.update(run=callback_body()["run"], results=[random_value(rng, 3) or {} for _ in range(3)])
        body["results"] = [row if isinstance(row, dict) else {"v": row} for row in body["results"]]
        text = json.dumps(body, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
        assert scan_callback(text.encode()).digest == page_digest(json.loads(text))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"{",
        b'{"run": {}} trailing',
        b"\xff",
        b'{"run": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        json.dumps({**callback_body(), "results": [1]}).encode(),
        json.dumps({**callback_body(), "results": {"a": 1}}).encode(),
        json.dumps({**callback_body(), "results_count": True}).encode(),
        json.dumps({**callback_body(), "custom_data": [1]}).encode(),
        # json.loads takes an unpaired surrogate, page_digest cannot encode it (was a 500).
        json.dumps({**callback_body(), "results": [{"a": "\ud800"}]}).encode(),
        json.dumps({**callback_body(), "input": "\udfff"}).encode(),
        json.dumps(
            {**callback_body(), "run": {"run_uid": "x", "batch_uid": str(uuid.uuid4()), "status": "S"}}
        ).encode(),
    ],
)
def test_bad_bodies(raw: bytes) -> None:
    with pytest.raises(BadCallback) as refused:
        scan_callback(raw)
    assert not isinstance(refused.value, ValueTooLarge)


def test_a_large_body_that_is_not_an_object_is_no_callback() -> None:
    with pytest.raises(BadCallback, match="must be a JSON object") as refused:
        scan_callback(b"[" + b"1, " * pages.MAX_VALUE_BYTES + b"1]")
    assert not isinstance(refused.value, ValueTooLarge)  # a 400: the body is within its limit


@pytest.mark.parametrize("name", ["x", "\U0001f600"], ids=["ascii", "one-emoji"])
def test_memory_per_callback_is_at_most_twice_its_body(name: str) -> None:
    # One character outside the BMP made the body's text, decoded whole, 4 bytes a character.
    body = callback_body(rows=0)
    body["results"] = [
        {"full_name": f"Person {i}", "headline": "x" * 120, "index": i, "tags": ["a", "b"], "score": 0.5}
        for i in range(50_000)
    ]
    body["results"][0]["full_name"] = name
    data = bytearray(json.dumps(body, ensure_ascii=False).encode())  # as the receiver holds it
    del body
    page, peak = _scan_peak(data)
    assert page.rows == 50_000
    print(f"\nbody {len(data) / 2**20:.1f} MiB, scan peak {peak / 2**20:.1f} MiB ({peak / len(data):.2f}x)")
    # The body itself is held by the caller: what the check adds is a window of text and one row.
    assert len(data) + peak <= 2 * len(data) + 64 * 1024  # plus one row


def _scan_peak(data: bytearray) -> tuple[pages.ScannedPage, int]:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        page = scan_callback(data)
        return page, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _with(member: bytes) -> bytes:
    run = json.dumps(callback_body()["run"]).encode()
    return b'{"run": ' + run + b", " + member + b"}"


LIMIT = pages.MAX_VALUE_BYTES


@pytest.mark.parametrize("window", [64, pages.WINDOW_BYTES, 4 * pages.MAX_VALUE_BYTES])
@pytest.mark.parametrize(
    ("member", "message"),
    [
        (b'"results": [{"a": [' + b",".join([b"{}"] * (LIMIT // 3)) + b"]}]", "a row of 'results'"),
        (b'"input": [' + b",".join([b"{}"] * (LIMIT // 3 + 1)) + b'], "results": []', "'input'"),
        (b'"results": [{}, {"a": "' + "é".encode() * (LIMIT // 2) + b'"}]', "a row of 'results'"),
        (b'"results": [], "secret-key-name": "' + b"x" * LIMIT + b'"', "a top-level member"),
        (b'"results": [0.' + b"0" * LIMIT + b"]", "a row of 'results'"),
    ],
    ids=["deep-row", "deep-input", "multibyte-row", "unknown-member", "long-number"],
)
def test_a_value_over_the_limit_is_refused_naming_the_member(
    monkeypatch: pytest.MonkeyPatch, window: int, member: bytes, message: str
) -> None:
    monkeypatch.setattr(pages, "WINDOW_BYTES", window)
    with pytest.raises(ValueTooLarge, match="larger than 256 KiB") as refused:
        scan_callback(_with(member))
    assert str(refused.value) == f"{message} is larger than 256 KiB"


@pytest.mark.parametrize("window", [64, pages.WINDOW_BYTES, 4 * pages.MAX_VALUE_BYTES])
def test_a_value_at_the_limit_is_accepted(monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    monkeypatch.setattr(pages, "WINDOW_BYTES", window)
    row = b'{"a": "' + b"x" * (LIMIT - 9) + b'"}'
    assert len(row) == LIMIT
    data = _with(b'"results": [' + row + b", " + row + b'], "input": ' + row)
    page = scan_callback(data)
    assert (page.rows, page.digest) == (2, page_digest(json.loads(data)))


@pytest.mark.parametrize("window", [64, pages.WINDOW_BYTES])
@pytest.mark.parametrize(
    "row",
    [b'{"a": 1,}', b'{"a": tru}', b'{"a": "\\x"}', b'{"a" 1}', b'{"a": [1 2]}', b'{"a": "\x01"}'],
    ids=["trailing-comma", "literal", "escape", "colon", "comma", "control-character"],
)
def test_a_malformed_row_far_from_the_end_is_not_json_not_too_large(
    monkeypatch: pytest.MonkeyPatch, window: int, row: bytes
) -> None:
    # A decode error inside a window is the body's, not a cut by the window's end: 400, not 413.
    monkeypatch.setattr(pages, "WINDOW_BYTES", window)
    rows = [b'{"x": "%d"}' % i for i in range(100_000)]
    rows[10] = row
    with pytest.raises(BadCallback, match=r"^the body is not JSON$"):
        scan_callback(_with(b'"results": [' + b", ".join(rows) + b"]"))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (b", ".join(b'"k%d": 1' % i for i in range(pages.MAX_MEMBERS)), "more than 64 top-level members"),
        (b'"' + b"k" * 257 + b'": 1', "longer than 256 characters"),
    ],
    ids=["members", "key"],
)
def test_top_level_keys_are_bounded(members: bytes, message: str) -> None:
    # Each key is held until the digest (sorted keys): millions of them cost ~200 bytes each.
    with pytest.raises(BadCallback, match=message):
        scan_callback(_with(members))
    scan_callback(_with(b", ".join(members.split(b", ")[:-1]) or b'"k": 1'))  # one fewer: accepted
