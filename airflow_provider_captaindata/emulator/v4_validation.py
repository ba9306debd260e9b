"""v4 requests checked the way the official document's schemas check them.

Bodies: each action has its own allowed top-level fields per run mode (``ActionSpec.bodies``);
``integration_users`` (the first release's name for ``identity_ids``) is accepted wherever
``identity_ids`` is. Query parameters: the rules of ``v4_queries.json``, derived from the
document by ``scripts/derive_v4_queries.py`` (enums, UUID and date-time formats, bounds, item
counts). Every refusal is a 400 ``INVALID_INPUT`` naming the field.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from starlette.datastructures import QueryParams

from airflow_provider_captaindata.client.catalog import (
    ActionSpec,
    catalog_metadata,
    fields_problems,
    input_problems,
)
from airflow_provider_captaindata.emulator.errors import ApiError, invalid_input

IDENTITY_MODES = ("direct", "auto", "managed")
LEGACY_IDENTITY_FIELD = "integration_users"
MAX_PROBLEMS_SHOWN = 5


def _problem_error(problems: list[tuple[str, str]]) -> ApiError:
    field = problems[0][0]
    shown = [message for _, message in problems[:MAX_PROBLEMS_SHOWN]]
    more = len(problems) - len(shown)
    message = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    return invalid_input(field, message)


def validate_body(action: ActionSpec, mode: str, body: Mapping[str, Any], *, check_patterns: bool) -> None:
    """Raise a 400 naming the first bad field of a ``mode`` body for ``action``."""
    spec = action.bodies.get(mode)
    if spec is None:
        raise ApiError(404, f"action '{action.name}' cannot run {mode}", label="NOT_FOUND")
    allowed = set(spec.fields)
    if "identity_ids" in allowed:
        allowed.add(LEGACY_IDENTITY_FIELD)
    for key in body:
        if key in allowed:
            continue
        if mode == "live" and key == "inputs":
            raise invalid_input(
                "inputs",
                "'inputs' is not allowed in a live run: send one object as 'input' (or use run/async)",
            )
        if mode != "live" and key == "input":
            raise invalid_input("input", f"'input' is not allowed in an {mode} run: send a list as 'inputs'")
        if key == "input" and "input" not in spec.fields:
            raise invalid_input("input", f"action '{action.name}' takes no input: remove 'input'")
        raise invalid_input(key, f"unknown body field '{key}' (allowed: {', '.join(sorted(allowed))})")
    for key in spec.required:
        if key not in body:
            raise invalid_input(key, f"'{key}' is required")
    if spec.required_any_of and not any(all(k in body for k in group) for group in spec.required_any_of):
        names = " or ".join(f"'{group[0]}'" for group in spec.required_any_of)
        raise invalid_input(spec.required_any_of[0][0], f"one of {names} is required")

    _check_identities(body)
    if "parameters" in body:
        _check_parameters(action, body["parameters"])
    if "input" in body:
        _check_input(action, body["input"], "input", check_patterns)
    if "inputs" in body:
        _check_inputs(action, body["inputs"], spec.min_inputs or 1, spec.max_inputs, check_patterns)
    if "callback" in body:
        _check_callback(body["callback"])
    if mode == "schedule":
        _check_schedule_fields(body)


def _check_identities(body: Mapping[str, Any]) -> None:
    for key in ("identity_ids", LEGACY_IDENTITY_FIELD):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid_input(key, f"'{key}' must be a list of identity uids (strings)")
    mode = body.get("identity_mode")
    if mode is not None and mode not in IDENTITY_MODES:
        raise invalid_input("identity_mode", f"'identity_mode' must be one of {', '.join(IDENTITY_MODES)}")


def _check_parameters(action: ActionSpec, parameters: Any) -> None:
    if not isinstance(parameters, Mapping):
        raise invalid_input("parameters", "'parameters' must be an object")
    problems = fields_problems(action.parameter_fields, parameters, what="parameters")
    if problems:
        raise _problem_error([(f"parameters.{p.field}", f"parameters: {p.message}") for p in problems])


def _check_input(action: ActionSpec, value: Any, where: str, check_patterns: bool) -> None:
    if not isinstance(value, Mapping):
        raise invalid_input(where, f"'{where}' must be an object")
    problems = input_problems(action.name, value, check_patterns=check_patterns)
    if problems:
        raise _problem_error([(f"{where}.{p.field}", f"{where}: {p.message}") for p in problems])


def _check_inputs(
    action: ActionSpec, inputs: Any, minimum: int, maximum: int | None, check_patterns: bool
) -> None:
    if not isinstance(inputs, list):
        raise invalid_input("inputs", "'inputs' must be a list of input objects")
    if len(inputs) < minimum or (maximum is not None and len(inputs) > maximum):
        bounds = f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise invalid_input("inputs", f"'inputs' must hold {bounds} inputs, got {len(inputs)}")
    problems: list[tuple[str, str]] = []
    for index, item in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(item, Mapping):
            problems.append((where, f"'{where}' must be an object"))
            continue
        for p in input_problems(action.name, item, check_patterns=check_patterns):
            problems.append((f"{where}.{p.field}", f"{where}: {p.message}"))
        if len(problems) > MAX_PROBLEMS_SHOWN:
            break
    if problems:
        raise _problem_error(problems)


def _check_callback(callback: Any) -> None:
    if not isinstance(callback, Mapping):
        raise invalid_input("callback", "'callback' must be an object {url, headers}")
    url = callback.get("url")
    if "url" not in callback:
        raise invalid_input("callback.url", "'callback.url' is required")
    pattern = catalog_metadata()["callback_url_pattern"]
    if url is not None and (not isinstance(url, str) or not re.search(pattern, url)):
        raise invalid_input("callback.url", f"'callback.url' must be an http(s) URL, got {url!r}")
    headers = callback.get("headers")
    if headers is not None and (
        not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values())
    ):
        raise invalid_input("callback.headers", "'callback.headers' must be an object of string values")


def _check_schedule_fields(body: Mapping[str, Any]) -> None:
    cron = body.get("cron")
    if "cron" in body and (not isinstance(cron, str) or not 1 <= len(cron) <= 256):
        raise invalid_input("cron", "'cron' must be a cron expression (1 to 256 characters)")
    if isinstance(cron, str) and not _valid_cron(cron):
        raise invalid_input("cron", f"'cron' is not a valid cron expression: {cron!r}")
    if "schedule_at" in body:
        value = body["schedule_at"]
        if not isinstance(value, str) or parse_datetime(value) is None:
            raise invalid_input("schedule_at", f"'schedule_at' must be an ISO 8601 date-time, got {value!r}")
    if "timezone" in body:
        zone = body["timezone"]
        if not isinstance(zone, str) or not 1 <= len(zone) <= 64 or not _valid_timezone(zone):
            raise invalid_input("timezone", f"'timezone' must be an IANA time zone, got {zone!r}")


def parse_datetime(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _valid_timezone(zone: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _valid_cron(expression: str) -> bool:
    try:
        from croniter import croniter
    except ImportError:  # optional: without croniter, any five fields pass
        return len(expression.split()) in (5, 6)
    return bool(croniter.is_valid(expression))


@cache
def query_rules() -> dict[str, dict[str, dict[str, Any]]]:
    """Per operation (``"GET /runs"``), each query parameter's rule from the document."""
    text = resources.files(__package__).joinpath("v4_queries.json").read_text(encoding="utf-8")
    operations: dict[str, dict[str, dict[str, Any]]] = json.loads(text)["operations"]
    return operations


def query_values(
    operation: str, query: QueryParams, rules: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The operation's query parameters checked against the document, defaults filled in.

    Arrays are repeated or comma-separated (``status=QUEUED,RUNNING``) and come back as lists
    (empty when absent); integers as ints, booleans as bools. Parameters the document does not
    list are left alone. ``rules``: another document's rules for the operation (v1's), in the
    same reduced form; the v4 ones by default.
    """
    values: dict[str, Any] = {}
    table = query_rules().get(operation, {}) if rules is None else rules
    for name, rule in table.items():
        raw = query.getlist(name)
        if rule.get("type") == "array":
            items = [v.strip() for text in raw for v in text.split(",") if v.strip()]
            if "maxItems" in rule and len(items) > rule["maxItems"]:
                raise invalid_input(
                    name,
                    f"query parameter '{name}' takes at most {rule['maxItems']} values, got {len(items)}",
                )
            for item in items:
                _check_scalar(name, item, rule["items"])
            values[name] = items or list(rule.get("default") or [])
        elif not raw or raw[-1] == "":
            if rule.get("required"):
                raise invalid_input(name, f"query parameter '{name}' is required")
            values[name] = rule.get("default")
        else:
            values[name] = _check_scalar(name, raw[-1], rule)
    return values


def _check_scalar(name: str, text: str, rule: Mapping[str, Any]) -> Any:
    """One query value against its schema: the value as the schema types it, or a 400."""
    if rule.get("type") == "integer":
        try:
            number = int(text)
        except ValueError:
            raise invalid_input(
                name, f"query parameter '{name}' must be a whole number, got {text!r}"
            ) from None
        low, high = rule.get("minimum"), rule.get("maximum")
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = " and ".join(
                part
                for part in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "")
                if part
            )
            raise invalid_input(name, f"query parameter '{name}' must be {bounds}, got {number}")
        return number
    if rule.get("type") == "boolean":
        if text.lower() not in ("true", "false"):
            raise invalid_input(name, f"query parameter '{name}' must be true or false, got {text!r}")
        return text.lower() == "true"
    if "enum" in rule and text not in rule["enum"]:
        raise invalid_input(
            name, f"query parameter '{name}' must be one of {', '.join(rule['enum'])}, got {text!r}"
        )
    problem = _format_problem(text, rule)
    if problem:
        raise invalid_input(name, f"query parameter '{name}' must be {problem}, got {text!r}")
    return text


def _format_problem(text: str, rule: Mapping[str, Any]) -> str | None:
    form = rule.get("format")
    if form == "uuid":
        try:
            uuid.UUID(text)
        except ValueError:
            return "a UUID"
    if form == "date-time" and parse_datetime(text) is None:
        return "an ISO 8601 date-time with a time zone"
    if form == "uri" and not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", text, re.IGNORECASE):
        return "a URI"
    if "pattern" in rule and not re.search(rule["pattern"], text):
        return f"a value matching {rule['pattern']}"
    if "maxLength" in rule and len(text) > rule["maxLength"]:
        return f"at most {rule['maxLength']} characters"
    if "minLength" in rule and len(text) < rule["minLength"]:
        return f"at least {rule['minLength']} characters"
    return None
