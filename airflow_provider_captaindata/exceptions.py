"""Named errors raised by the provider.

Every error text is built from API answers and parameter names only: the API key is never
part of a message, a repr or a chained exception (see ``CaptainDataTransportError``). Texts
taken from an answer are scrubbed of the key first, since an answer may echo the request
(see ``http.api_error``).
"""

from __future__ import annotations

import enum
from http import HTTPStatus
from typing import Any


class CaptainDataError(Exception):
    """Base class of every error this provider raises."""


class CaptainDataConfigError(CaptainDataError, ValueError):
    """A connection or parameter is missing or invalid; raised before any HTTP call."""


class CaptainDataAPIError(CaptainDataError):
    """The API answered with an error status, or with a redirect (never followed).

    The documented v4 error body ``{error_label, error_scope, error_ref, message, status_code,
    params}`` (v1 adds ``data``) is parsed when present; otherwise ``message`` holds the start
    of the body text.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_label: str | None = None,
        error_scope: str | None = None,
        error_ref: str | None = None,
        params: Any = None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
        hint: str = "",
        data: Any = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.error_label = error_label
        self.error_scope = error_scope
        self.error_ref = error_ref
        self.params = params
        self.method = method
        self.path = path
        self.retry_after = retry_after
        self.hint = hint  # what to fix, in this provider's words (e.g. the connection of a 401)
        self.data = data
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path} " if self.method else ""
        label = f"{self.error_label} " if self.error_label else ""
        details = ", ".join(
            f"{name}={value}"
            for name, value in (("scope", self.error_scope), ("ref", self.error_ref))
            if value
        )
        return (
            f"{where}failed with HTTP {self.status_code}: {label}{self.message}"
            + (f" ({details})" if details else "")
            + (f"; {self.hint}" if self.hint else "")
        )

    @property
    def is_retryable(self) -> bool:
        """Whether the shared retry policy retries this answer for a read: a 429 and every 5xx
        (a gateway's 520 or 524 as much as a 503)."""
        return self.status_code == 429 or 500 <= self.status_code <= 599


class CaptainDataTransportError(CaptainDataError):
    """No answer: connection refused or dropped, or a timeout.

    ``sent`` tells whether the request may have reached the API (a dropped connection or a
    read timeout) or surely did not (connection refused, name not resolved, TLS handshake
    refused, connect timeout). A launch is only re-sent blindly when ``sent`` is false.
    """

    def __init__(self, message: str, *, sent: bool, method: str = "", path: str = "") -> None:
        self.sent = sent
        self.method = method
        self.path = path
        super().__init__(f"{method} {path} failed: {message}" if method else message)


class CaptainDataResponseTooLarge(CaptainDataTransportError):
    """An answer (decompressed) longer than the policy's ``max_response_bytes``: not read
    further, not retried (it would be as long again). ``sent``: the API may have acted."""

    def __init__(self, method: str, path: str, limit: int) -> None:
        super().__init__(
            f"the answer is larger than max_response_bytes ({limit} bytes, after decompression); "
            "it was not read further. Raise RetryPolicy(max_response_bytes=...) if the API "
            "really sends answers this large",
            sent=True,
            method=method,
            path=path,
        )


OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


class CaptainDataOutcomeUnknown(CaptainDataError):
    """A live call of an action with effects (a message, a connection request...) failed in a
    way that leaves open whether the API acted: a read timeout, a dropped connection, a 5xx or a
    truncated answer. It is not re-sent, since that could act twice; check the action's runs in
    Captain Data (``GET /v4/runs?execution_mode=LIVE``) before sending it again yourself."""

    error_label = OUTCOME_UNKNOWN

    def __init__(self, action: str, cause: str) -> None:
        self.action = action
        self.cause = cause
        super().__init__(
            f"{OUTCOME_UNKNOWN}: {action} may or may not have acted ({cause}); it was not re-sent, "
            "since sending again could act twice. Check its live runs in Captain Data."
        )


class Fault(enum.Enum):
    """What a failed call tells about the API having acted on it (see :func:`classify`)."""

    #: The API answered that it did not act: a 4xx it documents, a 429, a redirect.
    REFUSED = "refused"
    #: The request never left: the connection (TCP, DNS or TLS) never opened.
    NOT_SENT = "not sent"
    #: Anything else: the API may have acted (every 5xx, an answer the client cannot classify,
    #: a connection dropped or a timeout after the request was written, a body cut short).
    MAY_HAVE_ACTED = "may have acted"


# Redirects that ask for the request to be made elsewhere: the API did not process it (a 303
# "see other" is the answer to a request that was processed, so it is not here).
_NOT_PROCESSED_REDIRECTS = frozenset({301, 302, 307, 308})


def classify(exc: BaseException) -> Fault:
    """The one classification of failures, for retries, launches and live actions with effects.

    Only what surely means "not acted" is REFUSED or NOT_SENT; whatever the client cannot
    classify (a 520 from a gateway, a 499, a 6xx, a 303, an unparsable 200) may have acted,
    since counting it as a refusal is what sends a message twice."""
    if isinstance(exc, CaptainDataAPIError):
        status = exc.status_code
        if 400 <= status <= 499 and status in _KNOWN_STATUSES:
            return Fault.REFUSED
        if status in _NOT_PROCESSED_REDIRECTS:
            return Fault.REFUSED
        return Fault.MAY_HAVE_ACTED
    if isinstance(exc, CaptainDataTransportError):
        return Fault.MAY_HAVE_ACTED if exc.sent else Fault.NOT_SENT
    if isinstance(exc, CaptainDataError):
        return Fault.NOT_SENT  # the provider's own refusal (a bad parameter, a foreign page URL)
    return Fault.MAY_HAVE_ACTED


def may_have_acted(exc: BaseException) -> bool:
    """Whether a failed call may have been processed anyway (see :func:`classify`)."""
    return classify(exc) is Fault.MAY_HAVE_ACTED


class CaptainDataRunError(CaptainDataError):
    """A run ended in a failed, stopped or unknown state, or needs attention."""

    def __init__(self, run_uid: str, status: str, message: str) -> None:
        self.run_uid = run_uid
        self.status = status
        self.message = message
        super().__init__(f"Captain Data run {run_uid} ended {status}: {message}")


class CaptainDataCreditsError(CaptainDataError):
    """A v1 task would cost more credits than the workspace has left (the credit check)."""


class CaptainDataPagingError(CaptainDataError):
    """A paged read cannot be complete: a page URL repeats (the paging loops), a page has no
    paging object, or the rows read differ from the count the run reports."""


class CaptainDataInputErrors(CaptainDataError):
    """Some inputs of a live fan-out failed (``on_input_error="fail"``)."""

    def __init__(self, failures: list[dict[str, Any]], total: int) -> None:
        self.failures = failures
        self.total = total
        shown = "; ".join(f"input {f.get('input_index')}: {_failure_text(f)}" for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {total} inputs failed: {shown}{more}")


def _failure_text(failure: dict[str, Any]) -> str:
    """One failed input as the API described it: label, message, then HTTP status, scope, ref."""
    details = ", ".join(
        f"{name}{failure[key]}"
        for name, key in (("HTTP ", "status_code"), ("scope=", "error_scope"), ("ref=", "error_ref"))
        if failure.get(key)
    )
    text = " ".join(str(p) for p in (failure.get("error_label"), failure.get("message")) if p)
    return text + (f" ({details})" if details else "")


_KNOWN_STATUSES = frozenset(int(status) for status in HTTPStatus)
