"""Derive the v1 API table from Captain Data's v1 OpenAPI document (December 2025).

Usage::

    python scripts/derive_v1_api.py [path/to/captaindata-v1-openapi.json] [--out PATH] [--check]

Writes ``airflow_provider_captaindata/client/catalog/v1_api.json``: for each of the eight operations,
its query and path parameters reduced as the v4 query rules are (``derive_v4_queries.reduced``),
with the document's JavaScript regular expressions (``/^https:.../i``) made Python ones, and its
200 response schema with references resolved. The client checks LinkedIn URLs with these
patterns before any call; the emulator checks queries with them and shapes its records on the
schemas. The package never reads the document itself. ``--check`` exits 1 when the committed
file differs from what the document gives (for CI).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derive_table import derive_table_main
from derive_v4_queries import reduced

HERE = Path(__file__).resolve().parent
DEFAULT_DOCUMENT = HERE.parent.parent / "shared" / "reference" / "captaindata-v1-openapi.json"
DEFAULT_OUT = HERE.parent / "airflow_provider_captaindata" / "client" / "catalog" / "v1_api.json"

# What changed after the December 2025 document (captaindata-api.md, v1 section): `page` was
# removed on 2026-01-15 for an opaque `cursor` taken from X-Pagination-Next, `page_size` is
# read-only (accepted and ignored: never a rule), and the employees endpoint gained `query`.
REMOVED_2026 = ("page", "page_size")
CURSOR_RULE = {"type": "string", "minLength": 1}
ADDED_2026 = {"GET /companies/{company_uid}/employees": {"query": {"type": "string"}}}
JS_REGEX = re.compile(r"^/(?P<body>.*)/(?P<flags>[a-z]*)$", re.DOTALL)


def python_pattern(pattern: str) -> str:
    """A JavaScript regex literal (``/.../i``) as a Python pattern; others are kept."""
    match = JS_REGEX.match(pattern)
    if not match:
        return pattern
    flags = "".join(f for f in match["flags"] if f in "ims")
    return (f"(?{flags})" if flags else "") + match["body"]


def _rule(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    rule = reduced(schema)
    if "pattern" in rule:
        rule["pattern"] = python_pattern(rule["pattern"])
    if required:
        rule["required"] = True
    return rule


def _resolve(node: Any, schemas: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolve(schemas[node["$ref"].rsplit("/", 1)[1]], schemas)
        return {k: _resolve(v, schemas) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, schemas) for v in node]
    return node


def derive(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    operations: dict[str, Any] = {}
    for path, item in sorted(document["paths"].items()):
        for method, operation in sorted(item.items()):
            key = f"{method.upper()} {path}"
            query: dict[str, Any] = {}
            path_params: dict[str, Any] = {}
            for parameter in operation.get("parameters", []):
                name = parameter["name"]
                if parameter.get("in") == "path":
                    path_params[name] = _rule(parameter.get("schema") or {}, True)
                elif parameter.get("in") == "query" and name not in REMOVED_2026:
                    query[name] = _rule(parameter.get("schema") or {}, bool(parameter.get("required")))
            response = operation["responses"]["200"]
            paged = "X-Pagination-Next" in (response.get("headers") or {})
            if paged:
                query["cursor"] = dict(CURSOR_RULE)
            query.update(ADDED_2026.get(key, {}))
            operations[key] = {
                "query": query,
                "path": path_params,
                "paged": paged,
                "response": _resolve(response["content"]["application/json"]["schema"], schemas),
            }
    return {"operations": operations, "error": _resolve(schemas["APIError"], schemas)}


def main(argv: list[str] | None = None) -> int:
    return derive_table_main(
        argv,
        description=__doc__.split("\n", 1)[0],
        default_document=DEFAULT_DOCUMENT,
        default_out=DEFAULT_OUT,
        derive=derive,
        script="scripts/derive_v1_api.py",
    )


if __name__ == "__main__":
    sys.exit(main())
