"""The v4 action catalog: the 71 actions of Captain Data's official OpenAPI document.

``actions.json`` beside this module is derived from the document by
``scripts/derive_catalog.py`` (the package never reads the document itself). The hook
checks inputs against it before any HTTP call; the emulator validates requests and shapes
its fake results with it. Importing this module costs nothing: the JSON is read on first use.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CUSTOM_DATA",
    "ActionSpec",
    "BodySpec",
    "FieldSpec",
    "Problem",
    "action_names",
    "catalog_metadata",
    "closest_actions",
    "fields_problems",
    "get_action",
    "has_effects",
    "input_problems",
    "validate_input",
    "value_problem",
]

CUSTOM_DATA = "custom_data"  # every input may carry it; echoed back with the input's results
_JSON_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
}


@dataclass(frozen=True)
class FieldSpec:
    """One input or parameter field: its JSON type and the constraints the document gives."""

    name: str
    type: str
    required: bool
    enum: tuple[Any, ...] | None = None
    format: str | None = None
    pattern: str | None = None  # a Python regular expression (searched, as JSON Schema does)
    nullable: bool = False
    default: Any = None


@dataclass(frozen=True)
class BodySpec:
    """The top-level fields a request body of one run mode (live, async, schedule) may have."""

    fields: frozenset[str]
    required: tuple[str, ...]
    required_any_of: tuple[tuple[str, ...], ...] = ()
    min_inputs: int | None = None
    max_inputs: int | None = None


@dataclass(frozen=True)
class ActionSpec:
    """One v4 action.

    ``paginated`` actions answer a live call with a page of ``page_size`` rows and the next
    page's URL in ``X-Pagination-Next``; ``returns_array`` is also true for the two list
    actions that answer everything at once. ``output_fields`` maps each result field to its
    JSON type, written ``string:uri`` when the document gives a format.
    """

    name: str
    title: str
    modes: frozenset[str]
    paginated: bool
    page_size: int | None
    input_fields: Mapping[str, FieldSpec]
    required_inputs: tuple[str, ...]
    parameter_fields: Mapping[str, FieldSpec]
    output_fields: Mapping[str, str]
    returns_array: bool = False
    pagination: str | None = None  # "page" (page number in the URL) or "token" (opaque cursor)
    required_any_of: tuple[tuple[str, ...], ...] = ()  # "one of these" groups of input fields
    bodies: Mapping[str, BodySpec] = field(default_factory=dict)
    effects: bool = True  # a live call acts (sends, connects, visits): never re-sent blindly

    @property
    def takes_input(self) -> bool:
        """False for actions such as ``linkedin-me`` whose live body has no ``input``."""
        live = self.bodies.get("live")
        return live is None or "input" in live.fields


@dataclass(frozen=True)
class Problem:
    """A reason an input is refused: the field it is about (dotted path) and a message."""

    field: str
    message: str


@functools.cache
def _raw_catalog() -> dict[str, Any]:
    from importlib import resources

    text = resources.files(__name__).joinpath("actions.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _field(name: str, raw: Mapping[str, Any]) -> FieldSpec:
    enum = raw.get("enum")
    return FieldSpec(
        name=name,
        type=raw["type"],
        required=bool(raw.get("required")),
        enum=tuple(enum) if enum else None,
        format=raw.get("format"),
        pattern=raw.get("pattern"),
        nullable=bool(raw.get("nullable")),
        default=raw.get("default"),
    )


def _body(raw: Mapping[str, Any]) -> BodySpec:
    return BodySpec(
        fields=frozenset(raw["fields"]),
        required=tuple(raw["required"]),
        required_any_of=tuple(tuple(group) for group in raw.get("required_any_of", [])),
        min_inputs=raw.get("min_inputs"),
        max_inputs=raw.get("max_inputs"),
    )


@functools.cache
def _actions() -> dict[str, ActionSpec]:
    specs: dict[str, ActionSpec] = {}
    for name, raw in _raw_catalog()["actions"].items():
        inputs = {k: _field(k, v) for k, v in raw["input_fields"].items()}
        specs[name] = ActionSpec(
            name=name,
            title=raw["title"],
            modes=frozenset(raw["modes"]),
            paginated=raw["pagination"] is not None,
            page_size=raw["page_size"],
            input_fields=inputs,
            required_inputs=tuple(k for k, f in inputs.items() if f.required),
            parameter_fields={k: _field(k, v) for k, v in raw["parameter_fields"].items()},
            output_fields=dict(raw["output_fields"]),
            returns_array=raw["returns_array"],
            pagination=raw["pagination"],
            required_any_of=tuple(tuple(g) for g in raw.get("input_required_any_of", [])),
            bodies={mode: _body(body) for mode, body in raw["bodies"].items()},
            effects=raw["effects"],
        )
    return specs


def catalog_metadata() -> dict[str, Any]:
    """Where the catalog comes from (document title, version, sha256 prefix) and the body-wide facts
    (``body_fields`` per mode, ``legacy_body_fields``, ``callback_url_pattern``, ``effects_rule``)."""
    return {k: v for k, v in _raw_catalog().items() if k != "actions"}


def action_names() -> list[str]:
    """Every action name, sorted."""
    return sorted(_actions())


def get_action(name: str) -> ActionSpec | None:
    """The action called ``name``, or None."""
    return _actions().get(name)


def has_effects(name: str) -> bool:
    """Whether a live call of ``name`` acts (a message, a connection request, a visit...) rather
    than only reads: such a call is never re-sent after an ambiguous failure. Unknown actions
    count as acting. The rule is the catalog's ``effects_rule``."""
    spec = get_action(name)
    return spec is None or spec.effects


def closest_actions(name: str, n: int = 3) -> list[str]:
    """Action names that look like ``name`` (for "did you mean" hints)."""
    import difflib

    return difflib.get_close_matches(str(name), action_names(), n=n, cutoff=0.6)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, list | tuple)
    return True


def value_problem(spec: FieldSpec, value: Any, *, check_patterns: bool = False) -> str | None:
    """Why ``value`` does not fit ``spec`` (wrong type, not in the enum, pattern), or None."""
    if value is None:
        return None if spec.nullable else f"'{spec.name}' must not be null"
    if not _type_ok(value, spec.type):
        expected = _JSON_TYPE_NAMES.get(spec.type, spec.type)
        return f"'{spec.name}' must be {expected}, got {type(value).__name__}"
    if spec.enum is not None and value not in spec.enum:
        return f"'{spec.name}' must be one of {', '.join(map(repr, spec.enum))}, got {value!r}"
    pattern_failed = check_patterns and spec.pattern and isinstance(value, str)
    if pattern_failed and not _compiled(str(spec.pattern)).search(value):
        return f"'{spec.name}' has an invalid value {value!r}"
    return None


def fields_problems(
    fields: Mapping[str, FieldSpec],
    values: Mapping[str, Any],
    *,
    what: str,
    extra_allowed: tuple[str, ...] = (),
    required_any_of: tuple[tuple[str, ...], ...] = (),
    check_patterns: bool = False,
) -> list[Problem]:
    """Unknown, missing and ill-typed fields of one object (an input or the parameters)."""
    problems: list[Problem] = []
    for name in values:
        if name not in fields and name not in extra_allowed:
            allowed = ", ".join(sorted(fields)) or "none"
            import difflib  # only on a bad field: importing the catalog stays cheap

            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(Problem(name, f"unknown {what} field '{name}' (allowed: {allowed}){hint}"))
    for spec in fields.values():
        if spec.required and spec.name not in values:
            problems.append(Problem(spec.name, f"'{spec.name}' is required"))
    if required_any_of and not any(all(f in values for f in group) for group in required_any_of):
        names = " or ".join("+".join(f"'{f}'" for f in group) for group in required_any_of)
        problems.append(Problem(required_any_of[0][0], f"one of {names} is required"))
    for name, value in values.items():
        known = fields.get(name)
        if known is not None:
            message = value_problem(known, value, check_patterns=check_patterns)
            if message:
                problems.append(Problem(name, message))
    return problems


def input_problems(action: str, input: Mapping[str, Any], *, check_patterns: bool = False) -> list[Problem]:
    """Everything wrong with one input of ``action``; empty when it is valid.

    ``check_patterns`` also matches values against the document's patterns (LinkedIn URL
    shapes and so on): the emulator does, the hook does not (the API has the last word)."""
    spec = get_action(action)
    if spec is None:
        hint = closest_actions(action)
        suffix = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
        return [Problem("action", f"unknown action '{action}'{suffix}")]
    if not isinstance(input, Mapping):
        return [Problem("input", f"an input must be an object, got {type(input).__name__}")]
    problems = fields_problems(
        spec.input_fields,
        input,
        what="input",
        extra_allowed=(CUSTOM_DATA,),
        required_any_of=spec.required_any_of,
        check_patterns=check_patterns,
    )
    custom = input.get(CUSTOM_DATA)
    if custom is not None and not isinstance(custom, Mapping):
        message = f"'{CUSTOM_DATA}' must be an object, got {type(custom).__name__}"
        problems.append(Problem(CUSTOM_DATA, message))
    return problems


def validate_parameters(action: str, parameters: Mapping[str, Any]) -> list[str]:
    """Human messages naming each unknown, missing or ill-typed field of ``parameters`` for a
    known ``action`` (the emulator's rule for a request's ``parameters``)."""
    spec = get_action(action)
    if spec is None:
        return []
    return [p.message for p in fields_problems(spec.parameter_fields, parameters, what="parameters")]


def validate_input(action: str, input: Mapping[str, Any]) -> list[str]:
    """Human messages naming each missing required field, unknown field or wrong type of
    ``input`` for ``action`` (an empty list means valid). ``custom_data`` is always allowed."""
    return [p.message for p in input_problems(action, input)]
