"""What one call is (``ApiRequest``), what it got (``ApiResponse``) and the one retry/timeout
policy both clients follow (``RetryPolicy``); the rules are told in
:mod:`airflow_provider_captaindata.client.transport`, which sends with them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_captaindata.client.body import DEFAULT_MAX_RESPONSE_BYTES
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataResponseTooLarge,
    CaptainDataTransportError,
    Fault,
    classify,
)

if TYPE_CHECKING:
    import tenacity

# The retry warnings keep the logger they always had: logging set up for the transport's name
# (a level, a filter) still reaches them.
log = logging.getLogger("airflow_provider_captaindata.client.transport")


@dataclass(frozen=True)
class ApiRequest:
    """One call: full URL, headers (auth included), optional JSON body and query.

    ``secrets`` are the values (the API key, a callback URL's token) that an error text must
    never show: an error body may echo the request, so :func:`api_error` replaces them with
    ``***``.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    json: Any = field(default=None, repr=False)
    params: Mapping[str, Any] | None = None
    idempotent: bool = True
    secrets: tuple[str, ...] = field(default=(), repr=False)
    conn_id: str = ""  # the Airflow connection, named in errors that a DAG author fixes there

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


@dataclass(frozen=True)
class ApiResponse:
    status_code: int
    headers: Mapping[str, str]
    data: Any


@dataclass(frozen=True)
class RetryPolicy:
    """Timeouts and retries shared by every call, sync and async.

    :param attempts: tries in all, the first included.
    :param backoff_initial: first backoff in seconds, doubled at each try (plus jitter).
    :param backoff_max: cap of one backoff.
    :param retry_after_max: cap on how long a ``Retry-After`` header may make us wait.
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds to wait for an answer.
    :param launch_lookup_delay: after a launch failed ambiguously, the least time to wait before
        looking the run up: an API behind a gateway may go on creating a run it answered 502
        for, and list it only then. Too short a wait means a second run; too long only delays
        an already failed launch.
    :param max_response_bytes: the largest answer read, after decompression (64 MiB); a
        longer one raises ``CaptainDataResponseTooLarge`` and is not retried. A bound on what
        one answer can cost a worker or the triggerer, compressed or not.
    """

    attempts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 300.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    launch_lookup_delay: float = 5.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def should_retry(self, exc: BaseException, idempotent: bool) -> bool:
        if isinstance(exc, CaptainDataAPIError):
            if exc.status_code == 429:
                return True
            return idempotent and exc.is_retryable
        if isinstance(exc, CaptainDataResponseTooLarge):
            return False  # it would be as large again
        if isinstance(exc, CaptainDataTransportError):
            return idempotent or classify(exc) is Fault.NOT_SENT
        return False

    def wait_seconds(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        return self._backoff(retry_state)

    @property
    def _backoff(self) -> tenacity.wait.wait_base:
        import tenacity

        # Exponential from backoff_initial, capped, plus up to one initial step of jitter.
        return tenacity.wait_exponential(
            multiplier=self.backoff_initial, max=self.backoff_max
        ) + tenacity.wait_random(0, self.backoff_initial)

    def backoff_seconds(self, attempt: int) -> float:
        """The backoff before try ``attempt + 1`` (used where tenacity does not drive the loop)."""
        return min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max) + random.uniform(
            0, self.backoff_initial
        )

    def _retry_kwargs(self, request: ApiRequest) -> dict[str, Any]:
        import tenacity  # imported on first call: DAG files that never call the API skip it

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s; retry %s of %s in %.1f s",
                exc,
                state.attempt_number,
                self.attempts - 1,
                state.next_action.sleep if state.next_action else 0.0,
            )

        return {
            "stop": tenacity.stop_after_attempt(self.attempts),
            "wait": self.wait_seconds,
            "retry": tenacity.retry_if_exception(lambda e: self.should_retry(e, request.idempotent)),
            "before_sleep": log_retry,
            "reraise": True,
        }

    def retrying(self, request: ApiRequest) -> tenacity.Retrying:
        """The retry loop, entered after the first try failed retryably.

        Transports make the first try outside tenacity: building its loop costs about as much
        CPU as a status GET, and nearly every poll succeeds at once. The loop's attempt 1
        re-raises that first error, so waits, attempt counts and logs are tenacity's own.
        """
        import tenacity

        return tenacity.Retrying(**self._retry_kwargs(request))

    def async_retrying(self, request: ApiRequest) -> tenacity.AsyncRetrying:
        import tenacity

        return tenacity.AsyncRetrying(**self._retry_kwargs(request))


DEFAULT_POLICY = RetryPolicy()
