"""The v1 API's operations as data, derived from Captain Data's v1 document by
``scripts/derive_v1_api.py`` (``v1_api.json`` beside this file).

Per operation (``"GET /people/enrich"``): its query rules (type, pattern, required, as the v4
query rules), path rules, whether it pages through ``X-Pagination-Next``, and its 200 response
schema. The client checks LinkedIn URLs with the same patterns the emulator enforces.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

PEOPLE_SEARCH = "GET /people/search"
PEOPLE_FIND = "GET /people/find"
PEOPLE_ENRICH = "GET /people/enrich"
COMPANIES_SEARCH = "GET /companies/search"
COMPANIES_FIND = "GET /companies/find"
COMPANIES_ENRICH = "GET /companies/enrich"
COMPANY_EMPLOYEES = "GET /companies/{company_uid}/employees"
QUOTAS = "GET /quotas"


@cache
def v1_table() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("v1_api.json").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def v1_operation(operation: str) -> dict[str, Any]:
    """``{query, path, paged, response}`` of one operation (KeyError for an unknown one)."""
    spec: dict[str, Any] = v1_table()["operations"][operation]
    return spec


def v1_query_rules(operation: str) -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = v1_operation(operation)["query"]
    return rules


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def parameter_problem(operation: str, name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``name`` for ``operation`` (query or path), or None.

    Checks what a caller can get wrong before any call: presence, type and the document's
    pattern (the LinkedIn URL forms, the company uid)."""
    spec = v1_operation(operation)
    rule = spec["query"].get(name) or spec["path"].get(name)
    if rule is None:
        return f"{operation} takes no parameter {name!r}"
    if value is None or value == "":
        return f"{name!r} is required" if rule.get("required") else None
    if rule.get("type") == "boolean":
        return None if isinstance(value, bool) else f"{name!r} must be true or false, got {value!r}"
    if (rule.get("type") == "string" and not isinstance(value, str | int)) or isinstance(value, bool):
        return f"{name!r} must be a string, got {type(value).__name__}"
    pattern = rule.get("pattern")
    if pattern and not _compiled(pattern).search(str(value)):
        return f"{name!r} does not have the form the API accepts ({pattern}): {str(value)[:200]!r}"
    return None
