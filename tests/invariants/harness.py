"""Running a scenario and checking the invariants against the emulator's record.

``Violation`` names the invariant broken; the emulator's request log (``api_status``: what the
API itself did, even when the client saw a fault instead) is the ground truth.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from airflow_provider_captaindata.client.transport import RetryPolicy
from tests.invariants.scenarios import CYCLE, CYCLE_PAGES, FAULTS, Scenario

# Short timeouts and backoffs so a scenario takes seconds: a 0.8 s answer is a read timeout.
POLICY = RetryPolicy(
    attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=0.5, launch_lookup_delay=0
)


class Violation(AssertionError):
    """An invariant of docs/guarantees.md does not hold."""


# A second policy, for scenarios where two share one event loop (a triggerer runs every
# trigger on one): a long read timeout, which a slow answer must not exceed.
LONG_POLICY = RetryPolicy(
    attempts=3, backoff_initial=0.01, backoff_max=0.05, read_timeout=5.0, launch_lookup_delay=0
)


def harness_policy() -> contextlib.AbstractContextManager[None]:
    """Every hook built while inside (by the operators and triggers themselves) uses ``POLICY``."""
    return hooks_default_to(POLICY)


@contextlib.contextmanager
def hooks_default_to(policy: RetryPolicy) -> Iterator[None]:
    """Every hook built while inside without a policy of its own uses ``policy``."""
    from airflow_provider_captaindata.hooks.base import CaptainDataBaseHook

    patched = []
    classes = [CaptainDataBaseHook]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        defaults = cls.__dict__.get("__init__") and cls.__init__.__kwdefaults__
        if defaults and "retry_policy" in defaults:
            patched.append((cls.__init__, defaults["retry_policy"]))
            defaults["retry_policy"] = policy
    try:
        yield
    finally:
        for init, before in reversed(patched):
            assert init.__kwdefaults__ is not None
            init.__kwdefaults__["retry_policy"] = before


def install(emulator: Any, scenario: Scenario, method: str, path: str | None) -> None:
    """The scenario's faults on ``path`` (faults on inputs: matched by body)."""
    # A cycle's links first: later faults on its input then hit its pages, not its first call.
    for fault in sorted(scenario.faults, key=lambda f: f.kind != CYCLE):
        if fault.kind == CYCLE:
            assert path is not None, "page links are drawn on a live action's calls only"
            link = f"{emulator.base_url}{path}?page={{}}"
            for page in range(1, CYCLE_PAGES + 1):  # page 1 -> 2 -> 3 -> 2 -> 3 ...
                emulator.add_fault(
                    method,
                    path,
                    match_body=fault.target,
                    body=[{"page": page}],
                    headers={"X-Pagination-Next": link.format(2 + page % 2)},
                )
        elif path is None:
            emulator.add_fault(method, fault.target, times=fault.times, **FAULTS[fault.kind])
        else:
            emulator.add_fault(method, path, times=fault.times, match_body=fault.target, **FAULTS[fault.kind])


def check(condition: bool, invariant: str, detail: Any) -> None:
    if not condition:
        raise Violation(f"{invariant}: {json.dumps(detail, default=str)[:2000]}")
