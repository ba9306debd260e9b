"""Findings of a review of the windowed check (each test failed before its fix): a valid page
whose whitespace before a ``,`` ran to a window's end was refused, several built values were
alive at once, and a page nested deeper than a task can read was accepted."""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks import pages
from airflow_provider_captaindata.callbacks.pages import BadCallback, scan_callback
from airflow_provider_captaindata.callbacks.storage import page_digest

RUN = (
    '{"run_uid":"11111111-1111-1111-1111-111111111111",'
    '"batch_uid":"22222222-2222-2222-2222-222222222222","status":"x"}'
)


def obj(*members: tuple[str, str]) -> str:
    """A JSON object from members whose values are JSON text already."""
    return "{" + ",".join(f'"{key}":{value}' for key, value in members) + "}"


def expected(data: bytes) -> tuple[str, int]:
    body = json.loads(data)
    return page_digest(body), len(body["results"])


@pytest.mark.parametrize("window", [64, pages.MAX_VALUE_BYTES])
def test_whitespace_before_a_comma_running_to_the_windows_end(
    window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "WINDOW_BYTES", window)
    for pad in range(80):
        for spaces in (3, 8, 70):
            row = '{"a":"' + "x" * (window - 150 + pad) + '"}'
            data = ('{"run":' + RUN + ',"results":[' + row + " " * spaces + ',{"b":1}]}').encode()
            page = scan_callback(data)  # was BadCallback("the body is not JSON") for 23 of 240
            assert (page.digest, page.rows) == expected(data)


def peak(data: bytes) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        scan_callback(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_one_built_value_at_a_time() -> None:
    # Three members of 256 KiB of "{}" (~8 MiB each when built): run, custom_data, a row.
    pad = "[" + ",".join(["{}"] * ((pages.MAX_VALUE_BYTES - 200) // 3)) + "]"
    rows = ",".join(
        obj(("name", '"Jane Doe"'), ("url", f'"https://example.com/in/j-{i}"'), ("n", str(i)))
        for i in range(60_000)
    )
    run = RUN[:-1] + ',"p":' + pad + "}"
    data = obj(
        ("run", run), ("custom_data", obj(("p", pad))), ("results", f"[{obj(('p', pad))},{rows}]")
    ).encode()
    page = scan_callback(data)
    assert (page.digest, page.rows) == expected(data)
    one_value = peak(obj(("run", RUN), ("results", f"[{obj(('p', pad))}]")).encode())
    # Before: 24.3 MiB, three values and a row built twice; now one value and the window.
    assert peak(data) <= one_value * 1.5, (peak(data) / 2**20, one_value / 2**20)


def at_depth(frames: int, func: Callable[..., Any], *args: Any) -> Any:
    return func(*args) if frames == 0 else at_depth(frames - 1, func, *args)


def nested(levels: int, where: str) -> bytes:
    value = "[" * levels + "]" * levels
    if where == "row":
        return obj(("run", RUN), ("results", f"[{obj(('a', value))}]")).encode()
    return obj(("run", RUN), ("custom_data", obj(("a", value))), ("results", "[]")).encode()


@pytest.mark.parametrize("where", ["row", "member"])
def test_every_accepted_page_is_readable_from_a_deep_stack(where: str) -> None:
    with ThreadPoolExecutor(max_workers=1) as checker:  # as the receiver checks, shallow
        # A row (or custom_data) is an object: 63 arrays in it are 64 levels, the limit.
        data = nested(pages.MAX_DEPTH - 1, where)
        assert checker.submit(scan_callback, data).result()
        assert sys.getrecursionlimit() == 1000
        assert at_depth(400, json.loads, data)  # a task's stack is far shallower than that
        for levels in (pages.MAX_DEPTH, 965):  # 965: accepted before, unreadable 40 frames deep
            with pytest.raises(BadCallback, match=r"nests more than 64 levels|not JSON"):
                checker.submit(scan_callback, nested(levels, where)).result()
