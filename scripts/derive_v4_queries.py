"""Derive the emulator's v4 query-parameter rules from Captain Data's official OpenAPI document.

Usage::

    python scripts/derive_v4_queries.py [path/to/captaindata-v4-openapi.json] [--out PATH] [--check]

Writes ``airflow_provider_captaindata/emulator/v4_queries.json``: for every operation of the
document that takes query parameters (runs, callbacks, schedules, live actions), each
parameter's schema reduced to what a check needs (type, enum, format, pattern, bounds,
item counts, default, required). The emulator refuses a request that breaks one of them with
the v4 error body, as the API does; it never reads the document itself. ``--check`` exits 1
when the committed file differs from what the document gives (for CI).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from derive_table import derive_table_main

HERE = Path(__file__).resolve().parent
DEFAULT_DOCUMENT = HERE.parent.parent / "shared" / "reference" / "captaindata-v4-openapi.json"
DEFAULT_OUT = HERE.parent / "airflow_provider_captaindata" / "emulator" / "v4_queries.json"

KEPT = ("type", "enum", "format", "pattern", "minimum", "maximum", "minLength", "maxLength", "default")
ARRAY_KEPT = ("minItems", "maxItems")


def reduced(schema: dict[str, Any]) -> dict[str, Any]:
    rule = {key: schema[key] for key in KEPT if key in schema}
    if schema.get("type") == "array":
        rule.update({key: schema[key] for key in ARRAY_KEPT if key in schema})
        rule["items"] = reduced(schema.get("items") or {})
    return rule


def derive(document: dict[str, Any]) -> dict[str, Any]:
    operations: dict[str, dict[str, Any]] = {}
    for path, item in sorted(document["paths"].items()):
        for method, operation in sorted(item.items()):
            if method == "parameters" or not isinstance(operation, dict):
                continue
            parameters = {}
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "query":
                    continue
                rule = reduced(parameter.get("schema") or {})
                if parameter.get("required"):
                    rule["required"] = True
                parameters[parameter["name"]] = rule
            if parameters:
                operations[f"{method.upper()} {path}"] = parameters
    return operations


def main(argv: list[str] | None = None) -> int:
    return derive_table_main(
        argv,
        description=__doc__.split("\n", 1)[0],
        default_document=DEFAULT_DOCUMENT,
        default_out=DEFAULT_OUT,
        derive=lambda document: {"operations": derive(document)},
        script="scripts/derive_v4_queries.py",
    )


if __name__ == "__main__":
    sys.exit(main())
