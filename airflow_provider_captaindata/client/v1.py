"""The v1 API (people and companies, real time) as a third generation beside v3 and v4.

v1 is eight synchronous GETs: what differs from v3/v4 is data here (``ENDPOINTS``, the
derived parameter rules of :mod:`airflow_provider_captaindata.catalog.v1`); the transport,
retry policy and rate gate are the same objects the other generations use. What both the sync
and the async client do is decided by plain functions and :class:`CursorPager`, so the two
differ only where one awaits.

* Parameters are checked before any call (required, the document's LinkedIn URL patterns,
  the company uid), naming the parameter; the Sales Navigator ``query`` is decoded once.
* Lists follow ``X-Pagination-Next`` as given until it is absent, empty or ``null``; no page
  size is assumed; a repeated next page fails; ``max_results`` stops the reading. A cursor
  the API refuses (expired after 24 h, or unknown) restarts from the first page, skipping the
  rows already given, so no row is given twice.
* 429 waits for ``Retry-After`` (the transport's policy); 424 (the upstream LinkedIn or Sales
  Navigator fetch failed) is tried ``UPSTREAM_ATTEMPTS`` times, then raised for the caller to
  report per input.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from airflow_provider_captaindata.client.catalog import v1 as spec
from airflow_provider_captaindata.client.paging import PageTrail, next_page_url, same_origin_url
from airflow_provider_captaindata.client.policy import DEFAULT_POLICY, ApiRequest, ApiResponse, RetryPolicy
from airflow_provider_captaindata.client.rate import shared_async_limiter, shared_sync_gate
from airflow_provider_captaindata.client.settings import V1_DEFAULT_BASE_URL
from airflow_provider_captaindata.client.transport import SyncTransport
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataConfigError,
    CaptainDataPagingError,
)

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.transport_async import AsyncTransport

log = logging.getLogger(__name__)

UPSTREAM_FAILED = 424
UPSTREAM_ATTEMPTS = 3  # a 424 is often a passing LinkedIn hiccup: tried this often in all
RESTARTS_MAX = 3  # cursor refusals in one reading before giving up
CURSOR_LIFETIME_SECONDS = 24 * 3600  # the API's: an older cursor is not worth sending
# (uncertain) how the API refuses an expired or unknown cursor: a 4xx about `cursor`.
CURSOR_REFUSAL_STATUSES = (400, 404, 410, 422)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


@dataclass(frozen=True)
class V1Endpoint:
    """One v1 operation: its name in this package and its operation in the document."""

    name: str
    operation: str
    single_input: str | None = None  # the parameter that names one input (find/enrich)

    @property
    def path(self) -> str:
        return self.operation.split(" ", 1)[1]

    @property
    def paged(self) -> bool:
        return bool(spec.v1_operation(self.operation)["paged"])

    @property
    def response_schema(self) -> dict[str, Any]:
        """The schema of one record (of a list's items)."""
        schema: dict[str, Any] = spec.v1_operation(self.operation)["response"]
        return dict(schema.get("items") or {}) if schema.get("type") == "array" else schema


ENDPOINTS: dict[str, V1Endpoint] = {
    e.name: e
    for e in (
        V1Endpoint("search_people", spec.PEOPLE_SEARCH),
        V1Endpoint("search_companies", spec.COMPANIES_SEARCH),
        V1Endpoint("company_employees", spec.COMPANY_EMPLOYEES),
        V1Endpoint("find_person", spec.PEOPLE_FIND, "full_name"),
        V1Endpoint("find_company", spec.COMPANIES_FIND, "company_name"),
        V1Endpoint("enrich_person", spec.PEOPLE_ENRICH, "li_profile_url"),
        V1Endpoint("enrich_company", spec.COMPANIES_ENRICH, "li_company_url"),
        V1Endpoint("quotas", spec.QUOTAS),
    )
}


def get_endpoint(name: str) -> V1Endpoint:
    try:
        return ENDPOINTS[name]
    except KeyError:
        raise CaptainDataConfigError(
            f"unknown v1 endpoint {name!r} (known: {', '.join(sorted(ENDPOINTS))})"
        ) from None


def decode_query(query: str) -> str:
    """A Sales Navigator query as pasted (usually percent-encoded, from the search URL) decoded
    once, so that the HTTP library's own encoding is the only one."""
    return unquote(query) if _PERCENT_ESCAPE.search(query) else query


def prepare(endpoint: V1Endpoint, params: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The path and query of a call, checked: CaptainDataConfigError names the bad parameter."""
    rules = spec.v1_operation(endpoint.operation)
    known = {**rules["query"], **rules["path"]}
    query: dict[str, str] = {}
    path = endpoint.path
    for name in params:
        if name not in known or name == "cursor":
            raise CaptainDataConfigError(
                f"{endpoint.name}: unknown parameter {name!r} (takes: "
                f"{', '.join(sorted(n for n in known if n != 'cursor')) or 'none'})"
            )
    for name in known:
        value = params.get(name)
        if name == "query" and isinstance(value, str):
            value = decode_query(value.strip())
        problem = spec.parameter_problem(endpoint.operation, name, value)
        if problem:
            raise CaptainDataConfigError(f"{endpoint.name}: {problem}")
        if value is None or value == "":
            continue
        if name in rules["path"]:
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        else:
            query[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return path, query


def is_cursor_refusal(exc: BaseException) -> bool:
    if not isinstance(exc, CaptainDataAPIError) or exc.status_code not in CURSOR_REFUSAL_STATUSES:
        return False
    field_name = (exc.params or {}).get("field") if isinstance(exc.params, dict) else None
    return field_name == "cursor" or "CURSOR" in str(exc.error_label or "").upper()


def upstream_wait(policy: RetryPolicy, exc: CaptainDataAPIError, attempt: int) -> float | None:
    """Seconds before trying again after try ``attempt`` failed with ``exc``; None: raise it.

    Only a 424 (the upstream fetch failed) is tried again here, ``UPSTREAM_ATTEMPTS`` times in
    all with the policy's backoff; 429 and 5xx are the transport's. A plain loop, not tenacity:
    building a tenacity loop for every call costs about as much CPU as the call."""
    if exc.status_code != UPSTREAM_FAILED or attempt >= UPSTREAM_ATTEMPTS:
        return None
    wait = policy.backoff_seconds(attempt)
    log.warning("%s; upstream retry %s of %s in %.1f s", exc, attempt, UPSTREAM_ATTEMPTS - 1, wait)
    return wait


@dataclass
class CursorPager:
    """The state of one list reading, shared by the sync and async clients.

    ``next`` is the URL (and, for the first page only, the query) to fetch, None when done.
    """

    first_url: str
    first_params: dict[str, str]
    max_results: int | None = None
    what: str = "v1 list"
    base_url: str = ""  # next pages are called only on its origin (paging.same_origin_url)
    given: int = 0
    pages: int = 0
    restarts: int = 0
    _skip: int = 0
    _next: tuple[str, dict[str, str] | None] | None = None
    _trail: PageTrail | None = None

    def __post_init__(self) -> None:
        if self.max_results is not None and (
            isinstance(self.max_results, bool)
            or not isinstance(self.max_results, int)
            or self.max_results < 1
        ):
            raise CaptainDataConfigError(
                f"max_results must be a positive whole number, got {self.max_results!r}"
            )
        self._next = (self.first_url, self.first_params)

    @property
    def next(self) -> tuple[str, dict[str, str] | None] | None:
        return self._next

    def take(self, url: str, response: ApiResponse) -> list[dict[str, Any]]:
        """The rows of a page that are new to the reader; moves ``next`` on."""
        data = response.data
        if data is None:
            data = []
        if not isinstance(data, list):
            raise CaptainDataPagingError(f"{self.what}: a page is not a list ({type(data).__name__})")
        self.pages += 1
        rows = data
        if self._skip:
            dropped = min(self._skip, len(rows))
            rows, self._skip = rows[dropped:], self._skip - dropped
        if self.max_results is not None:
            rows = rows[: self.max_results - self.given]
        self.given += len(rows)
        if self.max_results is not None and self.given >= self.max_results:
            self._next = None
            return rows
        following = next_page_url(response.headers, url)
        if following is not None:
            following = same_origin_url(following, self.base_url or self.first_url)
        self._trail = self._trail or PageTrail(self.what)
        following = self._trail.next_url(url, following, len(rows))
        self._next = (following, None) if following is not None else None
        return rows

    def restart(self, exc: BaseException) -> bool:
        """After a refused cursor: start again from the first page (True), skipping the rows
        already given; False when the error is not a cursor refusal or restarts ran out."""
        reading_first_page = self._next == (self.first_url, self.first_params)
        if reading_first_page or not is_cursor_refusal(exc) or self.restarts >= RESTARTS_MAX:
            return False
        self.restarts += 1
        log.warning(
            "%s: the API refused the cursor (%s); reading again from the first page, skipping the "
            "%s rows already read (restart %s of %s)",
            self.what,
            getattr(exc, "error_label", None) or exc,
            self.given,
            self.restarts,
            RESTARTS_MAX,
        )
        self._skip = self.given
        self._trail = None  # the same pages are read again: not a loop
        self._next = (self.first_url, self.first_params)
        return True

    def resume(self, given: int, next_url: str | None, cursor_fresh: bool) -> None:
        """Go on from an earlier reading that gave ``given`` rows and stopped before
        ``next_url`` (None: it had read every page). A cursor that is no longer fresh (saved more
        than a day ago) is not used: the reading starts again and skips the rows already given."""
        self.given = given
        if (self.max_results is not None and given >= self.max_results) or next_url is None:
            self._next = None
        elif cursor_fresh:
            self._next = (next_url, None)
        else:
            self._skip = given
            self._next = (self.first_url, self.first_params)


class _V1Base:
    def __init__(
        self, api_key: str, base_url: str, rate_limit_per_second: float, policy: RetryPolicy
    ) -> None:
        if not api_key:
            raise CaptainDataConfigError("api_key: a v1 API key is required")
        if not rate_limit_per_second > 0:
            raise CaptainDataConfigError(
                "rate_limit_per_second must be positive (the plan's requests per second), "
                f"got {rate_limit_per_second!r}"
            )
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.rate_limit_per_second = float(rate_limit_per_second)
        self.policy = policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _request(self, url: str, params: Mapping[str, str] | None) -> ApiRequest:
        # Every URL gets the key, so every one is checked here, not only a fresh next link: a
        # cursor saved by an earlier try (CursorPager.resume) may name another origin.
        url = same_origin_url(url, self.base_url)
        return ApiRequest(
            "GET", url, headers={"X-API-Key": self._api_key}, params=params, secrets=(self._api_key,)
        )

    def _first(self, name: str, params: Mapping[str, Any]) -> tuple[V1Endpoint, str, dict[str, str]]:
        endpoint = get_endpoint(name)
        path, query = prepare(endpoint, {k: v for k, v in params.items() if v is not None})
        return endpoint, self.base_url + path, query

    def _call_target(self, name: str, params: Mapping[str, Any]) -> tuple[str, dict[str, str] | None]:
        """The URL and query (None: none) of a non-list call."""
        endpoint, url, query = self._first(name, params)
        if endpoint.paged:
            raise CaptainDataConfigError(f"{name} is a list endpoint: iterate it with rows()")
        return url, query or None

    def pager(self, name: str, max_results: int | None = None, **params: Any) -> CursorPager:
        endpoint, url, query = self._first(name, params)
        if not endpoint.paged:
            raise CaptainDataConfigError(f"{name} is not a list endpoint")
        return CursorPager(url, query, max_results=max_results, what=name, base_url=self.base_url)


class V1Client(_V1Base):
    """Blocking v1 client (``V1Client(api_key=...)`` works from a plain script).

    :param api_key: the v1 API key (sent as ``X-API-Key``).
    :param base_url: ``https://api.captaindata.com/v1`` unless pointed elsewhere (the emulator).
    :param rate_limit_per_second: the plan's rate (Trial 1 ... Titanium 40), shared by every
        client of the process with the same base URL and rate.
    :param policy: timeouts and retries (the other generations' :class:`RetryPolicy`).
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = V1_DEFAULT_BASE_URL,
        rate_limit_per_second: float = 1.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        transport: SyncTransport | None = None,
    ) -> None:
        super().__init__(api_key, base_url, rate_limit_per_second, policy)
        self._transport = transport or SyncTransport(policy)
        self._gate = shared_sync_gate(self.base_url, self.rate_limit_per_second)

    def close(self) -> None:
        self._transport.close()

    def _send(self, url: str, params: Mapping[str, str] | None) -> ApiResponse:
        request = self._request(url, params)
        attempt = 1
        while True:
            try:
                return self._transport.send(request, self._gate.wait)
            except CaptainDataAPIError as exc:
                wait = upstream_wait(self.policy, exc, attempt)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def call(self, name: str, **params: Any) -> Any:
        """One non-list call (find, enrich, quotas): its JSON answer."""
        return self._send(*self._call_target(name, params)).data

    def read(self, pager: CursorPager) -> Iterator[list[dict[str, Any]]]:
        """The pages of a reading, as lists of new rows (restarts on a refused cursor)."""
        while pager.next is not None:
            url, params = pager.next
            try:
                response = self._send(url, params)
            except CaptainDataAPIError as exc:
                if pager.restart(exc):
                    continue
                raise
            yield pager.take(url, response)

    def rows(self, name: str, max_results: int | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        for page in self.read(self.pager(name, max_results, **params)):
            yield from page

    def search_people(self, query: str, *, max_results: int | None = None) -> Iterator[dict[str, Any]]:
        """``GET /people/search``: people of a Sales Navigator query (pasted as is), up to ``max_results``."""
        return self.rows("search_people", max_results, query=query)

    def search_companies(self, query: str, *, max_results: int | None = None) -> Iterator[dict[str, Any]]:
        """``GET /companies/search``: companies of a Sales Navigator query."""
        return self.rows("search_companies", max_results, query=query)

    def company_employees(
        self, company_uid: str | int, *, query: str | None = None, max_results: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """``GET /companies/{company_uid}/employees``: a company's employees (uid or LinkedIn id)."""
        return self.rows("company_employees", max_results, company_uid=company_uid, query=query)

    def find_person(self, full_name: str, company_name: str | None = None) -> dict[str, Any]:
        """``GET /people/find``: ``{li_profile_url, uid, li_profile_id}``."""
        return dict(self.call("find_person", full_name=full_name, company_name=company_name))

    def find_company(self, company_name: str) -> dict[str, Any]:
        """``GET /companies/find``: ``{li_company_url, uid, li_company_id}``."""
        return dict(self.call("find_company", company_name=company_name))

    def enrich_person(self, li_profile_url: str, *, full_enrich: bool = False) -> dict[str, Any]:
        """``GET /people/enrich``: a profile (experiences, skills, education with ``full_enrich``)."""
        return dict(self.call("enrich_person", li_profile_url=li_profile_url, full_enrich=full_enrich))

    def enrich_company(self, li_company_url: str) -> dict[str, Any]:
        """``GET /companies/enrich``: a company."""
        return dict(self.call("enrich_company", li_company_url=li_company_url))

    def quotas(self) -> dict[str, Any]:
        """``GET /quotas``: the workspace's credits (``credits_left`` may be fractional)."""
        return dict(self.call("quotas"))


class AsyncV1Client(_V1Base):
    """The async twin of :class:`V1Client` (aiohttp, one pool per event loop, aiolimiter)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = V1_DEFAULT_BASE_URL,
        rate_limit_per_second: float = 1.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        transport: AsyncTransport | None = None,
    ) -> None:
        from airflow_provider_captaindata.client.transport_async import AsyncTransport

        super().__init__(api_key, base_url, rate_limit_per_second, policy)
        self._transport = transport or AsyncTransport(policy)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _send(self, url: str, params: Mapping[str, str] | None) -> ApiResponse:
        request = self._request(url, params)
        limiter = shared_async_limiter(self.base_url, self.rate_limit_per_second)
        attempt = 1
        while True:
            try:
                return await self._transport.send(request, limiter.acquire)
            except CaptainDataAPIError as exc:
                wait = upstream_wait(self.policy, exc, attempt)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1

    async def call(self, name: str, **params: Any) -> Any:
        return (await self._send(*self._call_target(name, params))).data

    async def read(self, pager: CursorPager) -> AsyncIterator[list[dict[str, Any]]]:
        while pager.next is not None:
            url, params = pager.next
            try:
                response = await self._send(url, params)
            except CaptainDataAPIError as exc:
                if pager.restart(exc):
                    continue
                raise
            yield pager.take(url, response)

    async def rows(
        self, name: str, max_results: int | None = None, **params: Any
    ) -> AsyncIterator[dict[str, Any]]:
        async for page in self.read(self.pager(name, max_results, **params)):
            for row in page:
                yield row

    def search_people(self, query: str, *, max_results: int | None = None) -> AsyncIterator[dict[str, Any]]:
        return self.rows("search_people", max_results, query=query)

    def search_companies(
        self, query: str, *, max_results: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self.rows("search_companies", max_results, query=query)

    def company_employees(
        self, company_uid: str | int, *, query: str | None = None, max_results: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self.rows("company_employees", max_results, company_uid=company_uid, query=query)

    async def find_person(self, full_name: str, company_name: str | None = None) -> dict[str, Any]:
        return dict(await self.call("find_person", full_name=full_name, company_name=company_name))

    async def find_company(self, company_name: str) -> dict[str, Any]:
        return dict(await self.call("find_company", company_name=company_name))

    async def enrich_person(self, li_profile_url: str, *, full_enrich: bool = False) -> dict[str, Any]:
        return dict(await self.call("enrich_person", li_profile_url=li_profile_url, full_enrich=full_enrich))

    async def enrich_company(self, li_company_url: str) -> dict[str, Any]:
        return dict(await self.call("enrich_company", li_company_url=li_company_url))

    async def quotas(self) -> dict[str, Any]:
        return dict(await self.call("quotas"))
