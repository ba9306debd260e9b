"""Waiting in tests for something another process does: poll, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    check: Callable[[], Any], what: str = "the condition", timeout: float = 15.0, every: float = 0.05
) -> Any:
    """``check()``'s first truthy value, polled every ``every`` seconds for up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what} ({timeout:g} s)")
        time.sleep(every)
