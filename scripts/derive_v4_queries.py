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

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("document", nargs="?", type=Path, default=DEFAULT_DOCUMENT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if the committed file is out of date")
    args = parser.parse_args(argv)
    raw = args.document.read_bytes()
    table = {
        # A 16-digit prefix, as in the catalog: it identifies the document and never looks
        # like an API key.
        "source": {"document": args.document.name, "sha256_prefix": hashlib.sha256(raw).hexdigest()[:16]},
        "operations": derive(json.loads(raw)),
    }
    text = json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is out of date: run scripts/derive_v4_queries.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(table['operations'])} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
