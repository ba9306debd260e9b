"""Checks of DAG-facing parameters, shared by the operators, the sensor and the triggers.

Each check raises :class:`~airflow_provider_captaindata.exceptions.CaptainDataConfigError`
naming the parameter, so a bad value fails when the DAG is parsed (or once a template has
rendered), before any HTTP call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal, overload

from airflow_provider_captaindata.exceptions import CaptainDataConfigError

Lower = Literal["positive", "any"]


@overload
def seconds(name: str, value: Any, *, optional: Literal[False] = False, lower: Lower = ...) -> float: ...
@overload
def seconds(name: str, value: Any, *, optional: bool, lower: Lower = ...) -> float | None: ...
def seconds(name: str, value: Any, *, optional: bool = False, lower: Lower = "positive") -> float | None:
    """Seconds from a number or a timedelta: finite, and above zero unless ``lower="any"``
    (epoch seconds, or a trigger's grace period as serialized). ``optional``: None passes
    (meaning "no limit" or "unknown")."""
    if value is None and optional:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not number or (lower == "positive" and value <= 0):
        what = "a positive" if lower == "positive" else "a finite"
        none = " (or None)" if optional else ""
        raise CaptainDataConfigError(
            f"{name} must be {what} number of seconds or a timedelta{none}, got {value!r}"
        )
    return float(value)


def airflow_seconds(value: Any) -> float | None:
    """An Airflow duration (``execution_timeout``, ``retry_delay``: a timedelta or seconds) in
    seconds; None when unset. Airflow checked it already: nothing is refused here."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@overload
def whole_number(name: str, value: Any, *, minimum: int, optional: Literal[False] = False) -> int: ...
@overload
def whole_number(name: str, value: Any, *, minimum: int, optional: bool) -> int | None: ...
def whole_number(name: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    """An int (not a bool) of at least ``minimum``; None passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CaptainDataConfigError(
            f"{name} must be {'None or ' if optional else ''}an int >= {minimum}, got {value!r}"
        )
    return value


def check_flag(name: str, value: Any) -> None:
    """A flag must be a real bool: a string such as ``"no"`` would otherwise read as True."""
    if not isinstance(value, bool):
        raise CaptainDataConfigError(f"{name} must be True or False, got {value!r}")


def check_conn_id(value: Any, name: str = "captaindata_conn_id") -> None:
    """A connection id: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise CaptainDataConfigError(f"{name} must be a connection id (a non-empty string), got {value!r}")


def non_empty_string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise CaptainDataConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def is_templated(value: Any) -> bool:
    """True for values Airflow renders or resolves later (Jinja strings, XComArgs)."""
    return (isinstance(value, str) and "{{" in value) or type(value).__name__.endswith(
        ("XComArg", "MappedArgument")
    )


def as_json_value(name: str, value: Any) -> Any:
    """A rendered templated value: a JSON string becomes the list/dict it holds."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise CaptainDataConfigError(
                f"{name} rendered to a string that is not JSON: {value[:80]!r}"
            ) from None
    return value


def check_inputs(name: str, inputs: Any) -> list[dict[str, Any]]:
    """A non-empty list of JSON-serializable dicts, or a CaptainDataConfigError naming ``name``."""
    if not isinstance(inputs, Sequence) or isinstance(inputs, str | bytes) or not inputs:
        raise CaptainDataConfigError(f"{name} must be a non-empty list of dicts, got {inputs!r:.80}")
    for index, item in enumerate(inputs):
        if not isinstance(item, Mapping):
            raise CaptainDataConfigError(f"{name}[{index}] must be a dict, got {type(item).__name__}")
    try:
        json.dumps(list(inputs))
    except (TypeError, ValueError) as exc:
        raise CaptainDataConfigError(f"{name} must be JSON-serializable: {exc}") from None
    return [dict(i) for i in inputs]
