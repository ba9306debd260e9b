"""The transport: the errors of a failed call and the sync client (requests); the async one
(aiohttp) is :mod:`airflow_provider_captaindata.client.transport_async`. Both follow one
retry/timeout policy, :class:`~airflow_provider_captaindata.client.policy.RetryPolicy`.

The policy decides; the two clients only send bytes and turn answers into ``ApiResponse`` or
the errors of :mod:`airflow_provider_captaindata.exceptions`. Retries use tenacity, with the
same rules on both paths:

* 429, every 5xx, timeouts and dropped connections are retried with capped exponential
  backoff and jitter; ``Retry-After`` (seconds or an HTTP date) wins when given;
* any other 4xx is raised at once, and so is a 3xx: redirects are never followed, since they
  would carry the API key to wherever they point;
* a non-idempotent request (a launch, a live action with effects) is only retried when it
  surely was not processed: a 429 (refused before any work) or a connection that never opened.
  Anything else may have acted (:func:`~airflow_provider_captaindata.exceptions.classify`, the
  one classification of faults) and is raised so the caller can look the run up, or report
  ``OUTCOME_UNKNOWN``, before anything is sent again.
"""

from __future__ import annotations

import email.utils
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_provider_captaindata import __version__
from airflow_provider_captaindata.client.body import (
    ACCEPT_ENCODING,
    CHUNK_BYTES,
    BodyReader,
)
from airflow_provider_captaindata.client.paging import describe_origin
from airflow_provider_captaindata.client.policy import DEFAULT_POLICY, ApiRequest, ApiResponse, RetryPolicy
from airflow_provider_captaindata.client.scrub import scrub
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataError,
    CaptainDataTransportError,
)

if TYPE_CHECKING:
    import requests

USER_AGENT = f"airflow-provider-captaindata/{__version__}"
_ERROR_TEXT_LIMIT = 300
_SECRET_PART_CHARS = 16  # a callback URL's parts this long (tokens, launch keys) are scrubbed


def callback_secrets(body: Any) -> tuple[str, ...]:
    """What an error text must not show of a request body's ``callback``: its URL, each long
    part of it (the token is a path segment, a v4 ``callback.headers`` value may carry one) and
    its header values. An API error may echo the body, and its text reaches the task log."""
    callback = body.get("callback") if isinstance(body, dict) else None
    if not isinstance(callback, dict):
        return ()
    found: list[str] = []
    url = callback.get("url")
    if isinstance(url, str) and url:
        parts = urlsplit(url)
        pieces = [*parts.path.split("/"), *(v for q in parts.query.split("&") for v in q.split("=")[1:])]
        # The whole URL first: replaced before its parts, it leaves no origin-and-*** behind.
        found += [url, *(piece for piece in pieces if len(piece) >= _SECRET_PART_CHARS)]
    headers = callback.get("headers")
    if isinstance(headers, dict):
        found += [str(value) for value in headers.values() if value]
    return tuple(found)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def api_error(
    request: ApiRequest, status_code: int, headers: Mapping[str, str], content: bytes
) -> CaptainDataAPIError:
    """Build the error for a failed answer from the documented v4 error body, else from its text.

    Every text taken from the answer is scrubbed of ``request.secrets``: gateways, WAF pages and
    debug proxies may echo the request's headers, and this text reaches logs, XCom
    (``input_errors``), trigger events and the Test button."""
    secrets = request.secrets
    body: Any = None
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    retry_after = parse_retry_after(headers.get("Retry-After")) if status_code in (429, 503) else None
    hint = _status_hint(request, status_code)
    if isinstance(body, dict) and ("error_label" in body or "message" in body):
        return CaptainDataAPIError(
            status_code,
            scrub(str(body.get("message") or "").strip(), secrets) or "no message",
            error_label=scrub(body.get("error_label"), secrets),
            error_scope=scrub(body.get("error_scope"), secrets),
            error_ref=scrub(body.get("error_ref"), secrets),
            params=scrub(body.get("params"), secrets),
            data=scrub(body.get("data"), secrets),
            method=request.method,
            path=request.path,
            retry_after=retry_after,
            hint=hint,
        )
    # Scrubbed before the cut, so a key straddling the limit cannot leave a prefix behind.
    text = scrub(content.decode("utf-8", "replace"), secrets)
    snippet = " ".join(text.split())[:_ERROR_TEXT_LIMIT] or "empty body"
    return CaptainDataAPIError(
        status_code, snippet, method=request.method, path=request.path, retry_after=retry_after, hint=hint
    )


def _status_hint(request: ApiRequest, status_code: int) -> str:
    """What to fix for an answer that names its fix: a refused key is the connection's."""
    if status_code == 401 and request.conn_id:
        return (
            f"the API at {describe_origin(request.url)} refused the key of Airflow connection "
            f"{request.conn_id!r}: check its password field, labelled 'API key'"
        )
    return ""


def redirect_error(request: ApiRequest, status_code: int, headers: Mapping[str, str]) -> CaptainDataAPIError:
    """A 3xx is an error: following it would send the auth headers to wherever it points.

    Only the target's origin is named; its path or query may hold a token."""
    location = headers.get("Location")
    try:
        where = f"to {describe_origin(urljoin(request.url, location))}" if location else "without a Location"
    except ValueError:  # e.g. a malformed IPv6 host
        where = "to an unparsable URL"
    return CaptainDataAPIError(
        status_code,
        f"redirected {where} (redirects are not followed: they would carry the API key elsewhere; "
        "check the connection's base URL)",
        method=request.method,
        path=request.path,
    )


def decode(request: ApiRequest, status_code: int, headers: Mapping[str, str], content: bytes) -> ApiResponse:
    """Raise for an error status, else parse the JSON body (a truncated body counts as a dropped answer).

    JSON is parsed from the bytes (UTF-8/16/32 detected as RFC 8259 says): decoding to text
    first would cost a copy, or a charset guess when the answer names none."""
    if status_code >= 400:
        raise api_error(request, status_code, headers, content)
    if 300 <= status_code < 400:
        raise redirect_error(request, status_code, headers)
    try:
        data = json.loads(content) if content.strip() else None
    except ValueError:
        raise CaptainDataTransportError(
            f"answer {status_code} is not valid JSON ({len(content)} bytes)",
            sent=True,
            method=request.method,
            path=request.path,
        ) from None
    return ApiResponse(status_code, headers, data)


class SyncTransport:
    """Blocking client for workers: a requests Session with the policy's timeouts and retries."""

    def __init__(self, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        import requests

        self.policy = policy
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        # Only what BodyReader inflates itself, under the size cap.
        self._session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        cafile, capath = trusted_certificates()
        self._verify = cafile or capath or True

    def send(self, request: ApiRequest, gate: Callable[[], None] | None = None) -> ApiResponse:
        """Send with retries; ``gate`` (a rate limiter) is passed before every attempt."""
        try:
            return self._attempt(request, gate)
        except CaptainDataError as exc:
            if not self.policy.should_retry(exc, request.idempotent):
                raise
            failed: CaptainDataError | None = exc
        for attempt in self.policy.retrying(request):
            with attempt:
                first, failed = failed, None
                if first is not None:
                    raise first  # see RetryPolicy.retrying
                return self._attempt(request, gate)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _attempt(self, request: ApiRequest, gate: Callable[[], None] | None) -> ApiResponse:
        if gate is not None:
            gate()
        return self._send_once(request)

    def _send_once(self, request: ApiRequest) -> ApiResponse:
        import requests

        try:
            response = self._session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                json=request.json,
                params=request.params,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                # requests would resend X-API-Key to the new host (it strips only Authorization);
                # decode() turns the 3xx into an error. The async path does not follow them either.
                allow_redirects=False,
                stream=True,  # read below, under the size cap
                verify=self._verify,  # the async client's certificates too
            )
        except requests.RequestException as exc:
            sent = not _never_sent_requests(exc)
            raise transport_error(request, exc, sent=sent, policy=self.policy) from None
        with response:
            content = self._read(request, response)
        return decode(request, response.status_code, response.headers, content)

    def _read(self, request: ApiRequest, response: requests.Response) -> bytes:
        import urllib3.exceptions

        headers = response.headers
        reader = BodyReader(
            request.method, request.path, headers.get("Content-Encoding"), self.policy.max_response_bytes
        )
        reader.check_length(headers.get("Content-Length"))
        try:
            for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                reader.feed(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise transport_error(request, exc, sent=True, policy=self.policy) from None
        return reader.finish()

    def close(self) -> None:
        self._session.close()


def trusted_certificates() -> tuple[str | None, str | None]:
    """``(cafile, capath)`` that both clients verify the API's certificate with.

    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (OpenSSL's own variables, read by the async
    client's ``ssl`` module and now by the sync one too), else ``REQUESTS_CA_BUNDLE`` (requests'
    variable, now honoured by the async client too), else certifi's bundle, which both clients
    used by default: the Mozilla roots, not the system store. A private CA (a TLS-inspecting
    proxy, the emulator over HTTPS) goes in one of the variables; the docs say so."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        return cafile, capath
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
    if bundle:
        return bundle, None
    import certifi

    return certifi.where(), None


def _never_sent_requests(exc: requests.RequestException) -> bool:
    """Whether requests failed before any byte of the request left: a connect timeout, or a
    connection that never opened (refused, name not resolved, certificate refused).

    A pooled keep-alive connection that the server closed while idle is not such a failure:
    urllib3 sees the close before reusing it and opens a new one (tests/test_transport_faults.py).
    A connection that fails once the request was written (reset, closed before the answer) may
    have carried it: "sent", whatever the server did with it."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.ConnectTimeout):
        return True
    for cause in _causes(exc):
        if isinstance(cause, urllib3.exceptions.NewConnectionError | ssl.SSLCertVerificationError):
            return True
    return False


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (chained, ``reason``, ``os_error``, exception arguments)."""
    found: list[BaseException] = []
    pending = [exc]
    while pending and len(found) < 20:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        for inner in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            getattr(current, "os_error", None),
            getattr(current, "certificate_error", None),
            *current.args,
        ):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return found


def describe_cause(exc: BaseException, policy: RetryPolicy) -> str:
    """Why a connection failed, in words a DAG author can act on (DNS, refused, TLS, timeout).

    Only fixed words and the TLS verification reason: the exceptions' own texts may hold the
    full URL, hence a token in a callback or page URL."""
    causes = _causes(exc)
    names = {type(cause).__name__ for cause in causes}

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(cause, kinds) for cause in causes)

    verify_messages = [getattr(cause, "verify_message", None) for cause in causes]
    if has(ssl.SSLCertVerificationError):
        # aiohttp's wrapper is an SSLCertVerificationError too, without the reason: the
        # wrapped one has it.
        reason = next((message for message in verify_messages if message), "verification failed")
        return f"TLS: the server's certificate is not trusted ({reason})"
    if has(socket.gaierror) or names & {"NameResolutionError", "ClientConnectorDNSError"}:
        return "DNS: the host name does not resolve"
    if has(ssl.SSLError) or names & {"SSLError", "ClientSSLError", "ClientConnectorSSLError"}:
        return "TLS: the handshake failed"
    if has(ConnectionRefusedError):
        return "connection refused: nothing listens on that host and port"
    if names & {"ConnectTimeout", "ConnectTimeoutError", "ConnectionTimeoutError"}:
        return f"connect timed out after {policy.connect_timeout:g} s"
    if has(TimeoutError) or names & {"ReadTimeout", "ReadTimeoutError", "SocketTimeoutError"}:
        return f"no answer within {policy.read_timeout:g} s"
    if has(ConnectionResetError, BrokenPipeError):
        return "connection reset by the server"
    if names & {"RemoteDisconnected", "ServerDisconnectedError", "IncompleteRead", "ClientPayloadError"}:
        return "connection closed before the whole answer"
    return type(exc).__name__


def transport_error(
    request: ApiRequest, exc: BaseException, *, sent: bool, policy: RetryPolicy
) -> CaptainDataTransportError:
    """The error for a call that got no (whole) answer, naming the host, the cause and the
    connection. Chaining is cut by the callers (``from None``): the wrapped exceptions' texts
    can hold the full URL."""
    origin = describe_origin(request.url)
    cause = describe_cause(exc, policy)
    what = (
        f"the connection to {origin} failed after the request was sent ({cause})"
        if sent
        else f"no connection to {origin} ({cause})"
    )
    if request.conn_id:
        what += f"; check the host or base URL of Airflow connection {request.conn_id!r}"
    return CaptainDataTransportError(what, sent=sent, method=request.method, path=request.path)


class SyncRateGate:
    """Spaces blocking calls at most ``per_second`` apart (sequential calls on a worker)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


__all__ = [
    "DEFAULT_POLICY",
    "USER_AGENT",
    "ApiRequest",
    "ApiResponse",
    "CaptainDataError",
    "RetryPolicy",
    "SyncRateGate",
    "SyncTransport",
]
