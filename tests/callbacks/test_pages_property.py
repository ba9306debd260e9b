"""The windowed check of a callback body against parsing it whole (issue 22): random bodies,
windows of a few bytes so that cuts land everywhere (inside multibyte characters, escapes,
numbers, keys), same verdict, ids, row count and digest as ``json.loads`` + ``page_digest``."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_captaindata.callbacks import pages
from airflow_provider_captaindata.callbacks.pages import BadCallback, ValueTooLarge, scan_callback
from airflow_provider_captaindata.callbacks.storage import is_uuid, page_digest


@dataclass
class Obj:
    """A JSON object as written: its members in order, repeated keys kept."""

    pairs: list[tuple[str, Any]]


def dump(value: Any, rnd: random.Random) -> str:
    """JSON text with random whitespace between tokens and random escapes."""

    def ws() -> str:
        return rnd.choice(["", "", " ", "\n", "\t ", "\r\n  "])

    if isinstance(value, Obj):
        members = [f"{ws()}{dump(k, rnd)}{ws()}:{ws()}{dump(v, rnd)}{ws()}" for k, v in value.pairs]
        return "{" + (",".join(members) or ws()) + "}"
    if isinstance(value, list):
        return "[" + (",".join(f"{ws()}{dump(v, rnd)}{ws()}" for v in value) or ws()) + "]"
    text = json.dumps(value, ensure_ascii=rnd.random() < 0.5)
    return text.replace("/", "\\/") if isinstance(value, str) and rnd.random() < 0.5 else text


KEYS = st.sampled_from(["a", "é", "\U0001f600", 'k/\n"', "run", "results", ""]) | st.text(max_size=3)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=8)
    | st.text(st.characters(min_codepoint=0x80), max_size=4)  # multibyte and astral only
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.lists(st.tuples(KEYS, inner), max_size=4).map(Obj),
    max_leaves=10,
)
OBJECTS = st.lists(st.tuples(KEYS, VALUES), max_size=4).map(Obj)
UUIDS = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
RUNS = st.builds(
    lambda r, b, s: Obj([("run_uid", r), ("batch_uid", b), ("status", s)]),
    UUIDS,
    UUIDS,
    st.text(min_size=1, max_size=3),
)
MEMBERS = st.one_of(
    st.tuples(st.just("run"), RUNS | VALUES | st.just(Obj([("run_uid", "not-a-uuid")]))),
    st.tuples(st.just("results"), st.lists(OBJECTS | VALUES, max_size=5) | VALUES),
    st.tuples(st.just("results_count"), st.integers(min_value=-1) | VALUES),
    st.tuples(st.sampled_from(["input", "custom_data", "error", "x", "\U0001f600", ""]), VALUES | OBJECTS),
)
BODIES = st.builds(
    lambda run, results, others: Obj([run, results, *others]),
    st.tuples(st.just("run"), RUNS),
    st.tuples(st.just("results"), st.lists(OBJECTS, max_size=6)),
    st.lists(MEMBERS, max_size=6),
)


def parsed_whole(data: bytes) -> tuple[str, str, str, int, str] | None:
    """The reference: ``json.loads`` and ``page_digest`` with the shape rules; None if refused."""
    try:
        body = json.loads(data)
        digest = page_digest(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    run, count, custom, results = (body.get(k) for k in ("run", "results_count", "custom_data", "results"))
    if not isinstance(run, dict) or not all(is_uuid(run.get(k)) for k in ("run_uid", "batch_uid")):
        return None
    if not isinstance(run.get("status"), str) or not run["status"]:
        return None
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        return None
    if custom is not None and not isinstance(custom, dict):
        return None
    if results is not None and not (isinstance(results, list) and all(isinstance(r, dict) for r in results)):
        return None
    return run["run_uid"].lower(), run["batch_uid"].lower(), run["status"], len(results or []), digest


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=BODIES,
    rnd=st.randoms(use_true_random=False),
    window=st.sampled_from([16, 64, 64, 1024 * 1024]),
    mutation=st.sampled_from([None, None, None, "cut", "insert", "delete"]),
    mutation_at=st.floats(min_value=0, max_value=1),
)
def test_scans_as_parsing_whole(
    body: Obj, rnd: random.Random, window: int, mutation: str | None, mutation_at: float
) -> None:
    data = dump(body, rnd).encode()
    at = int(mutation_at * len(data))
    if mutation == "cut":
        data = data[:at]
    elif mutation == "insert":
        data = data[:at] + rnd.choice([b",", b"]", b"}", b'"', b"0", b" ", b"x", b"\xc3", b"\\"]) + data[at:]
    elif mutation == "delete":
        data = data[:at] + data[at + 1 :]
    expected = parsed_whole(data)
    saved, pages.WINDOW_BYTES = pages.WINDOW_BYTES, window  # no monkeypatch: a function-scoped fixture
    try:
        if expected is None:
            with pytest.raises(BadCallback) as refused:
                scan_callback(data)
            assert not isinstance(refused.value, ValueTooLarge)  # no value here is near the limit
        else:
            page = scan_callback(bytearray(data))
            assert (page.run_uid, page.batch_uid, page.status, page.rows, page.digest) == expected
    finally:
        pages.WINDOW_BYTES = saved
