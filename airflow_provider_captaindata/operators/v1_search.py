"""v1 searches: people, companies, or a company's employees, up to ``max_results``.

Pages are read through ``X-Pagination-Next`` and written as they come (XCom or a JSON Lines
file). Each page read is recorded (rows and the next page's URL) in the task's per-input
records (:mod:`airflow_provider_captaindata.checkpoint`), so a retried task pays again for no
page it already has: it reuses them and goes on from the saved cursor when that is younger
than a day, else reads from the first page again, skipping the rows it has. As for every
record, the task never removes them (a try may still fail after ``execute()``): the state
store clears them when Airflow records the success; beside ``output_path`` they stay with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow_provider_captaindata.checkpoint import DONE, InputRecords, call_mark, open_records
from airflow_provider_captaindata.operators.v1_base import (
    ESTIMATED_CREDITS_PER_RESULT,
    ESTIMATED_RESULTS_PER_PAGE,
    CaptainDataV1OperatorBase,
)
from airflow_provider_captaindata.params import whole_number
from airflow_provider_captaindata.results import aborted_on_error, open_sink

DEFAULT_MAX_RESULTS = 2500  # about what Sales Navigator gives for one search (uncertain)


def page_key(page: int) -> str:
    """The record of a page read (input records use the input's index)."""
    return f"page-{page}"


def _done(record: Any, mark: str) -> bool:
    return isinstance(record, dict) and record.get("state") == DONE and record.get("fp") == mark


class CaptainDataV1SearchOperator(CaptainDataV1OperatorBase):
    """Base of the v1 search operators (one per list endpoint below).

    :param max_results: stop after this many records (default 2,500, about Sales
        Navigator's own cap); pages are read only as far as needed.
    """

    endpoint: ClassVar[str]
    template_fields: Sequence[str] = ("max_results", "output_path")

    def __init__(self, *, max_results: int = DEFAULT_MAX_RESULTS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_results = max_results

    def search_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _checked(self) -> tuple[int, dict[str, Any]]:
        from airflow_provider_captaindata.client.v1 import get_endpoint, prepare

        max_results = self.max_results
        if isinstance(max_results, str) and max_results.strip().isdigit():
            max_results = int(max_results)  # rendered from a template
        whole_number("max_results", max_results, minimum=1)
        params = {k: v for k, v in self.search_params().items() if v is not None}
        prepare(get_endpoint(self.endpoint), params)  # names a bad parameter before any call
        return max_results, params

    def execute(self, context: Any) -> Any:
        max_results, params = self._checked()
        estimate = max_results * ESTIMATED_CREDITS_PER_RESULT + math.ceil(
            max_results / ESTIMATED_RESULTS_PER_PAGE
        )
        client = self.hook.v1_client()
        before = self.credits_before(client, estimate)
        records = open_records(context, self.output_path)
        mark = call_mark(self.endpoint, [params, max_results])
        pager = client.pager(self.endpoint, max_results, **params)
        with aborted_on_error(open_sink(self.output_path, max_xcom_bytes=self.max_xcom_bytes)) as sink:
            pages = self._reuse(records, mark, sink, pager) if records else 0
            for rows in client.read(pager):
                sink.add_page(rows)
                if records is not None:
                    following = pager.next[0] if pager.next else None
                    records.checkpoint.put(
                        page_key(pages),
                        {"state": DONE, "fp": mark, "rows": rows, "next": following, "at": time.time()},
                    )
                pages += 1
            spent = self.credits_spent(client, before)
            self.log.info(
                "%s: %s records in %s pages read (%s restarts from the first page)",
                self.endpoint,
                sink.rows,
                pager.pages,
                pager.restarts,
            )
            summary = {"endpoint": self.endpoint, "credits_spent": spent, "pages_read": pager.pages}
            result = sink.finish(**summary)
        if not self.output_path:
            self.push(context, "summary", {"rows": sink.rows, **summary})
        return self.land(context, result)

    def _reuse(self, records: InputRecords, mark: str, sink: Any, pager: Any) -> int:
        """Pages an earlier try of this task read, written again; the pager goes on after them."""
        from airflow_provider_captaindata.client.v1 import CURSOR_LIFETIME_SECONDS

        pages, given, last = 0, 0, None
        while records.resumed and _done(records.checkpoint.get(page_key(pages)), mark):
            record = records.checkpoint.get(page_key(pages))
            sink.add_page(record.get("rows") or [])
            given += len(record.get("rows") or [])
            last = record
            pages += 1
        if last is not None:
            fresh = time.time() - float(last.get("at") or 0) < CURSOR_LIFETIME_SECONDS
            pager.resume(given, last.get("next"), fresh)
            self.log.info(
                "Retry: %s records of %s pages read by an earlier try reused; %s",
                given,
                pages,
                "going on from its saved cursor" if fresh else "its cursor is too old: reading from page 1",
            )
        return pages


class CaptainDataSearchPeopleOperator(CaptainDataV1SearchOperator):
    """People of a Sales Navigator search (``GET /v1/people/search``).

    :param query: the Sales Navigator query, pasted as it is in the search URL (everything
        after ``?query=``, percent-encoded or not: it is decoded once). Templated.
    """

    endpoint = "search_people"
    template_fields: Sequence[str] = ("query", "max_results", "output_path")

    def __init__(self, *, query: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.query = query

    def search_params(self) -> dict[str, Any]:
        return {"query": self.query}


class CaptainDataSearchCompaniesOperator(CaptainDataSearchPeopleOperator):
    """Companies of a Sales Navigator company search (``GET /v1/companies/search``).

    :param query: the Sales Navigator company query, as pasted. Templated.
    """

    endpoint = "search_companies"


class CaptainDataCompanyEmployeesOperator(CaptainDataV1SearchOperator):
    """A company's employees (``GET /v1/companies/{company_uid}/employees``).

    :param company_uid: the company's Captain Data uid or LinkedIn numeric id (from a find,
        search or enrichment). Templated.
    :param query: an optional Sales Navigator query narrowing the employees. Templated.
    """

    endpoint = "company_employees"
    template_fields: Sequence[str] = ("company_uid", "query", "max_results", "output_path")

    def __init__(self, *, company_uid: str | int, query: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.company_uid = company_uid
        self.query = query

    def search_params(self) -> dict[str, Any]:
        return {"company_uid": self.company_uid, "query": self.query}
