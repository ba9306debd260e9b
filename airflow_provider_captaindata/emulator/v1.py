"""v1 (people and companies, real time) under ``/v1``: eight GETs, shaped as in 2026.

Queries are checked with the rules derived from the v1 document (``client/catalog/v1_api.json``)
by the same code as v4's; ``page`` and ``page_size`` are accepted and ignored, as the API
does since ``cursor`` paging replaced ``page`` (2026-01-15). List endpoints answer a bare
array and the next page's full URL in ``X-Pagination-Next``; the cursor in it is opaque, bound
to its search, and expires after ``v1_cursor_ttl_seconds``. Every answer spends credits that
``GET /quotas`` reports. The rate limit (per plan tier) is applied by the app, before routing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import airflow_provider_captaindata.emulator.v1_fakes as fakes
from airflow_provider_captaindata.client.catalog import v1 as spec
from airflow_provider_captaindata.emulator.errors import ApiError, invalid_input, json_response
from airflow_provider_captaindata.emulator.fakes import persona, row_random, slug
from airflow_provider_captaindata.emulator.state import EmulatorState
from airflow_provider_captaindata.emulator.v4_validation import query_values

NEXT_HEADER = "X-Pagination-Next"
PREVIOUS_HEADER = "X-Pagination-Previous"
# (uncertain) how the API refuses a cursor: a 400 about the `cursor` parameter, with these labels.
CURSOR_EXPIRED = "CURSOR_EXPIRED"
CURSOR_INVALID = "INVALID_CURSOR"
# A query still percent-encoded after the server decoded it once was encoded twice by the caller.
ENCODED_TWICE = re.compile(r"%[0-9A-Fa-f]{2}")
PLAN_NAME_WITHOUT_LIMIT = "Titanium"


def encode_cursor(search: str, offset: int, issued: float) -> str:
    raw = json.dumps({"s": search, "o": offset, "t": round(issued, 3)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _search_id(operation: str, values: dict[str, Any], path_params: dict[str, Any]) -> str:
    text = json.dumps([operation, values.get("query"), path_params], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class V1Api:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/v1/people/search", self.people_search, methods=["GET"]),
            Route("/v1/people/find", self.people_find, methods=["GET"]),
            Route("/v1/people/enrich", self.people_enrich, methods=["GET"]),
            Route("/v1/companies/search", self.companies_search, methods=["GET"]),
            Route("/v1/companies/find", self.companies_find, methods=["GET"]),
            Route("/v1/companies/enrich", self.companies_enrich, methods=["GET"]),
            Route("/v1/companies/{company_uid}/employees", self.employees, methods=["GET"]),
            Route("/v1/quotas", self.quotas, methods=["GET"]),
        ]

    def _values(self, operation: str, request: Request) -> dict[str, Any]:
        values = query_values(operation, request.query_params, spec.v1_query_rules(operation))
        for name in spec.v1_operation(operation)["path"]:
            problem = spec.parameter_problem(operation, name, request.path_params.get(name))
            if problem:
                raise invalid_input(name, problem)
        for name, rule in spec.v1_query_rules(operation).items():
            if "pattern" in rule and values.get(name) is not None:
                problem = spec.parameter_problem(operation, name, values[name])
                if problem:
                    raise invalid_input(name, problem)
        query = values.get("query")
        if isinstance(query, str) and ENCODED_TWICE.search(query):
            raise invalid_input("query", "'query' is still percent-encoded: it was encoded twice")
        return values

    def _spend(self, amount: float) -> None:
        self.state.credits_used += amount

    # -- lists -----------------------------------------------------------------------------

    async def people_search(self, request: Request) -> Response:
        return self._page(request, spec.PEOPLE_SEARCH, self.state.settings.v1_page_size)

    async def companies_search(self, request: Request) -> Response:
        return self._page(request, spec.COMPANIES_SEARCH, self.state.settings.v1_page_size)

    async def employees(self, request: Request) -> Response:
        return self._page(request, spec.COMPANY_EMPLOYEES, self.state.settings.v1_employees_page_size)

    def _page(self, request: Request, operation: str, size: int) -> Response:
        settings = self.state.settings
        values = self._values(operation, request)
        path_params = dict(request.path_params)
        search = _search_id(operation, values, path_params)
        start = self._cursor_offset(values.get("cursor"), search)
        total = settings.v1_search_total_results
        schema = spec.v1_operation(operation)["response"]["items"]
        rows = []
        for index in range(start, min(start + size, total)):
            key = (self.state.seed, "v1", search, index)
            extra = None
            if operation == spec.COMPANY_EMPLOYEES and settings.v1_employees_2026_fields:
                rng = row_random(*key, "2026")
                extra = fakes.employee_2026_fields(persona(rng), rng)
            row = fakes.record(schema, key, extra=extra)
            if operation == spec.COMPANIES_SEARCH:
                row["uid"] = fakes.company_uid(persona(row_random(*key)))
                row["number_employees"] = str(row.get("number_employees", "51-200"))
            rows.append(row)
        headers: dict[str, str] = {}
        if start + size < total:
            headers[NEXT_HEADER] = self._url(request, encode_cursor(search, start + size, time.time()))
        elif settings.v1_last_page_header != "absent":
            headers[NEXT_HEADER] = "" if settings.v1_last_page_header == "empty" else "null"
        if start > 0:
            headers[PREVIOUS_HEADER] = self._url(
                request, encode_cursor(search, max(0, start - size), time.time())
            )
        self._spend(settings.v1_credits_per_request + settings.v1_credits_per_result * len(rows))
        return json_response(rows, headers=headers)

    @staticmethod
    def _url(request: Request, cursor: str) -> str:
        return str(request.url.include_query_params(cursor=cursor))

    def _cursor_offset(self, cursor: str | None, search: str) -> int:
        if not cursor:
            return 0
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            offset, issued, bound = int(data["o"]), float(data["t"]), str(data["s"])
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            bound, offset, issued = "", 0, 0.0
        if bound != search or offset < 0:
            raise ApiError(
                400,
                "the cursor is not valid for this search",
                label=CURSOR_INVALID,
                params={"field": "cursor"},
            )
        age = time.time() - issued
        if age > self.state.settings.v1_cursor_ttl_seconds:
            raise ApiError(
                400,
                "the cursor has expired: start again from the first page",
                label=CURSOR_EXPIRED,
                params={"field": "cursor"},
                data={"cursor_age_seconds": round(age, 3)},
            )
        return offset

    # -- single records --------------------------------------------------------------------

    async def people_find(self, request: Request) -> Response:
        values = self._values(spec.PEOPLE_FIND, request)
        p = persona(row_random(self.state.seed, "v1-find", values["full_name"], values.get("company_name")))
        p["handle"] = f"{slug(values['full_name']) or 'profile'}-{p['profile_id'] % 10**6:06d}"
        self._spend(self.state.settings.v1_credits_per_find)
        return json_response(
            {
                "li_profile_url": f"{fakes.LI}/in/{p['handle']}",
                "uid": fakes.person_uid(p),
                "li_profile_id": p["profile_id"],
            }
        )

    async def companies_find(self, request: Request) -> Response:
        values = self._values(spec.COMPANIES_FIND, request)
        p = fakes.company_from_name(values["company_name"], self.state.seed)
        self._spend(self.state.settings.v1_credits_per_find)
        return json_response(
            {
                "li_company_url": f"{fakes.LI}/company/{p['company_handle']}",
                "uid": fakes.company_uid(p),
                "li_company_id": str(p["company_id"]),
            }
        )

    async def people_enrich(self, request: Request) -> Response:
        values = self._values(spec.PEOPLE_ENRICH, request)
        url = values["li_profile_url"]
        p = fakes.person_from_url(url, self.state.seed)
        full = bool(values.get("full_enrich"))
        schema = spec.v1_operation(spec.PEOPLE_ENRICH)["response"]
        omit = (
            frozenset()
            if full
            else frozenset({"experiences", "skills", "education", "volunteer_experiences"})
        )
        row = fakes.record(schema, (self.state.seed, "v1-enrich", url), p=p, omit=omit)
        row["li_profile_url"] = url
        self._spend(self.state.settings.v1_credits_per_enrich * (2 if full else 1))
        return json_response(row)

    async def companies_enrich(self, request: Request) -> Response:
        values = self._values(spec.COMPANIES_ENRICH, request)
        url = values["li_company_url"]
        p = fakes.company_from_url(url, self.state.seed)
        schema = spec.v1_operation(spec.COMPANIES_ENRICH)["response"]
        row = fakes.record(schema, (self.state.seed, "v1-company", url), p=p)
        row["uid"] = fakes.company_uid(p)
        row["li_company_url"] = url
        self._spend(self.state.settings.v1_credits_per_enrich)
        return json_response(row)

    async def quotas(self, request: Request) -> Response:
        settings = self.state.settings
        used = self.state.credits_used
        month = datetime.fromtimestamp(self.state.started, UTC).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        end = (
            month.replace(year=month.year + 1, month=1)
            if month.month == 12
            else month.replace(month=month.month + 1)
        )
        return json_response(
            {
                "uid": self.state.workspace_uid,
                "name": "Emulator workspace",
                "credits_left": round(max(0.0, settings.v4_credits - used), 3),
                "credits_max": settings.v4_credits,
                "credits_used": round(used, 3),
                "plan_name": settings.v1_plan or PLAN_NAME_WITHOUT_LIMIT,
                "current_month_start": month.isoformat().replace("+00:00", "Z"),
                "current_month_end": end.isoformat().replace("+00:00", "Z"),
            }
        )
