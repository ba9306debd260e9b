"""Running a scenario and checking the invariants against the emulator's record.

``Violation`` names the invariant broken; the emulator's request log (``api_status``: what the
API itself did, even when the client saw a fault instead) is the ground truth.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


class WorkerKilled(BaseException):
    """The worker dies (a SIGKILL, an OOM kill): nothing in the task's code catches it."""


@dataclass
class Kill:
    """Where a worker died: the bodies of the calls it had in flight, and of the calls answered
    before."""

    fired: bool = False
    in_flight: list[Any] = field(default_factory=list)
    answered: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def worker_dies(at_call: int | None, after: bool) -> Iterator[Kill]:
    """The worker dies at its ``at_call``-th API call (sync or async), before the request
    leaves or, ``after``, once the API has answered it (the answer never read)."""
    from airflow_provider_captaindata.client.api import CaptainDataClient
    from airflow_provider_captaindata.client.api_async import CaptainDataAsyncClient

    kill = Kill()
    if at_call is None:
        yield kill
        return
    calls = itertools.count(1)
    in_flight: dict[int, Any] = {}

    @contextlib.contextmanager
    def watched(body: Any) -> Iterator[Callable[[], None]]:
        """Around one call: dies before it, or hands back what to do once it was answered."""
        key = next(_keys)
        in_flight[key] = body
        try:
            dies = not kill.fired and next(calls) == at_call
            if dies:
                kill.fired, kill.in_flight = True, list(in_flight.values())
                if not after:
                    raise WorkerKilled

            def answered() -> None:
                if dies:
                    raise WorkerKilled
                if not kill.fired:
                    kill.answered.append(body)

            yield answered
        finally:
            in_flight.pop(key, None)

    def sync(original: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with watched(kwargs.get("json")) as answered:
                answer = original(self, *args, **kwargs)
                answered()
                return answer

        return call

    def asynchronous(original: Any) -> Any:
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with watched(kwargs.get("json")) as answered:
                answer = await original(self, *args, **kwargs)
                answered()
                return answer

        return call

    with contextlib.ExitStack() as stack:
        from unittest import mock

        stack.enter_context(mock.patch.object(CaptainDataClient, "_call", sync(CaptainDataClient._call)))
        stack.enter_context(
            mock.patch.object(CaptainDataAsyncClient, "_acall", asynchronous(CaptainDataAsyncClient._acall))
        )
        yield kill


_keys = itertools.count()


@contextlib.contextmanager
def later(seconds: float) -> Iterator[None]:
    """Every clock of the process (Airflow's, the provider's, the emulator's: Captain Data's)
    ``seconds`` ahead while inside, as when a user clears a DAG run hours after it ended. What
    happened inside is checked inside: outside, the emulator's runs made there lie in the future."""
    import datetime

    import time_machine

    if not seconds:
        yield
        return
    now = datetime.datetime.now(datetime.UTC)
    with time_machine.travel(now + datetime.timedelta(seconds=seconds), tick=True):
        yield


def run_dag_through_kills(dag: Any) -> Any:
    """``dag.test()``, going on after a worker died: Airflow 3's task runner records the death
    as the try's failure itself; on 2.11 it escapes ``dag.test()``, and the DAG run (its task
    up for retry or failed) is run on."""
    from tests.airflow_helpers import latest_dag_run, run_again, run_dag

    try:
        return run_dag(dag)
    except WorkerKilled:
        return run_again(dag, latest_dag_run(dag.dag_id))
