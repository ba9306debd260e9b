"""Downstream of the stack's DAGs: reads their result files back from S3 on a worker.

Nothing here touches the worker's disk: the files are found and read through
ObjectStoragePath, as a DAG on another machine (or another worker) would.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import ObjectStoragePath, Param, dag, task


@dag(
    dag_id="stack_downstream",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["captaindata", "stack"],
    params={"prefix": Param("", type="string", description="an s3:// folder of .jsonl files")},
)
def stack_downstream() -> None:
    @task
    def read_results(params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert params is not None
        folder = ObjectStoragePath(params["prefix"])
        files: dict[str, int] = {}
        hidden = []
        keys: list[str] = []
        for path in sorted(folder.rglob("*"), key=str):
            if not path.is_file():
                continue
            if path.name.startswith("."):  # a partial file left by a failed try
                hidden.append(path.name)
                continue
            rows = 0
            with path.open("r") as lines:
                for line in iter(lines.readline, ""):
                    row = json.loads(line)
                    # Which input the row is for: a fan-out's index, else the profile asked for.
                    index = (row.get("custom_data") or {}).get("airflow_input_index")
                    keys.append(str(index) if index is not None else str(row.get("linkedin_profile_url")))
                    rows += 1
            files[str(path).removeprefix(str(folder)).lstrip("/")] = rows
        print(f"{sum(files.values())} rows in {len(files)} files under {folder}; hidden: {hidden}")
        return {"files": files, "rows": sum(files.values()), "hidden": hidden, "inputs": keys}

    read_results()


stack_downstream()
