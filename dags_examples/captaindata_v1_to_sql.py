"""From a Sales Navigator search to a warehouse table with the current API (v1).

1. ``search``: the people of a Sales Navigator query (pasted as it is in the search URL), up
   to ``max_results``; pages are followed through ``X-Pagination-Next``.
2. ``enrich``: one profile per person at the plan's rate (the connection's
   ``rate_limit_per_second``), in the search's order; a person whose LinkedIn page cannot be
   fetched (424) is reported in the ``input_errors`` XCom, the others go on.
3. ``load``: the profiles into a SQL table through Airflow's common SQL operators
   (``SQLInsertRowsOperator``; the table is made by its ``preoperator``), here on SQLite.
4. ``count`` and ``report``: the table's row count (``SQLExecuteQueryOperator``), checked
   against the profiles enriched.

The SQL connection is ``captaindata_warehouse``, e.g. ``AIRFLOW_CONN_CAPTAINDATA_WAREHOUSE=
'{"conn_type": "sqlite", "host": "/tmp/captaindata-warehouse.db"}'`` (the ``examples`` extra
installs the SQLite provider); any database with a common-SQL hook works the same.
The Captain Data connection holds a v1 key (``api_version: v1``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

try:  # Airflow 3
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator, SQLInsertRowsOperator

from airflow_provider_captaindata.operators.v1_enrich import CaptainDataEnrichPeopleOperator
from airflow_provider_captaindata.operators.v1_search import CaptainDataSearchPeopleOperator

WAREHOUSE = "captaindata_warehouse"
TABLE = "captaindata_people"
COLUMNS = ("uid", "full_name", "headline", "job_title", "company_name", "location", "li_profile_url")


class InsertRows(SQLInsertRowsOperator):
    """``rows`` rendered as a template field: the upstream XCom is then resolved however the
    task is run (Airflow 3.1+ runs tasks from the serialized DAG, where a plain attribute
    holding an XComArg is not kept)."""

    template_fields = (*SQLInsertRowsOperator.template_fields, "rows")


def as_rows(records: list[dict[str, Any]], **context: Any) -> list[tuple[Any, ...]]:
    """Records as table rows: the columns kept, in order (fields a record lacks are NULL)."""
    return [tuple(record.get(column) for column in COLUMNS) for record in records]


@dag(
    dag_id="captaindata_v1_to_sql",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "example", "v1"],
    params={
        # Copied from a Sales Navigator URL, after ?query= (percent-encoded or not).
        "query": Param("(keywords%3A%22data%20engineer%22)", type="string"),
        "max_results": Param(40, type="integer", minimum=1),
    },
    render_template_as_native_obj=True,
)
def captaindata_v1_to_sql() -> None:
    search = CaptainDataSearchPeopleOperator(
        task_id="search", query="{{ params.query }}", max_results="{{ params.max_results }}"
    )
    enrich = CaptainDataEnrichPeopleOperator(task_id="enrich", inputs=search.output, max_concurrency=4)
    load = InsertRows(
        task_id="load",
        conn_id=WAREHOUSE,
        table_name=TABLE,
        columns=COLUMNS,
        rows=enrich.output,
        rows_processor=as_rows,
        preoperator=[
            f"DROP TABLE IF EXISTS {TABLE}",
            f"CREATE TABLE {TABLE} (uid TEXT PRIMARY KEY, {', '.join(f'{c} TEXT' for c in COLUMNS[1:])})",
        ],
    )
    count = SQLExecuteQueryOperator(task_id="count", conn_id=WAREHOUSE, sql=f"SELECT COUNT(*) FROM {TABLE}")

    @task
    def report(counted: Any, enriched: list[dict[str, Any]]) -> dict[str, Any]:
        rows = int(counted[0][0])
        if rows != len(enriched):
            raise ValueError(f"{TABLE} holds {rows} rows, {len(enriched)} profiles were enriched")
        print(f"{rows} profiles loaded into {TABLE}")
        return {"rows": rows}

    load >> count
    report(count.output, enrich.output)


captaindata_v1_to_sql()
