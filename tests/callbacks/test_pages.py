"""The streaming check of a callback body: same verdicts and digest as parsing it whole, and
memory near twice the body (issue 22 #4: one 10 MiB callback cost ~310 MiB)."""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
import uuid
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks.pages import BadCallback, scan_callback
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
        json.dumps(
            {**callback_body(), "run": {"run_uid": "x", "batch_uid": str(uuid.uuid4()), "status": "S"}}
        ).encode(),
    ],
)
def test_bad_bodies(raw: bytes) -> None:
    with pytest.raises(BadCallback):
        scan_callback(raw)


def test_memory_per_callback_is_at_most_twice_its_body() -> None:
    body = callback_body(rows=0)
    body["results"] = [
        {"full_name": f"Person {i}", "headline": "x" * 120, "index": i, "tags": ["a", "b"], "score": 0.5}
        for i in range(50_000)
    ]
    data = bytearray(json.dumps(body).encode())  # as the receiver holds it
    del body
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        page = scan_callback(data)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert page.rows == 50_000
    print(f"\nbody {len(data) / 2**20:.1f} MiB, scan peak {peak / 2**20:.1f} MiB ({peak / len(data):.2f}x)")
    # The body itself is held by the caller: what the check adds is its text and one row.
    assert len(data) + peak <= 2 * len(data) + 64 * 1024  # plus one row
