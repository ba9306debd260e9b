"""Derive the v4 action catalog from Captain Data's official OpenAPI document.

Usage::

    python scripts/derive_catalog.py [path/to/captaindata-v4-openapi.json] [--out PATH] [--check]

Writes ``airflow_provider_captaindata/client/catalog/actions.json``, which the hook (input checks
before any HTTP call) and the emulator (request validation, fake results) read at run time:
the package never reads the OpenAPI document itself. ``--check`` exits 1 when the committed
file differs from what the document gives (for CI).

What the document does not say is filled from ``captaindata-api.md`` and marked so in the
output (``page_size_source``); the few places where the document contradicts itself are
listed in ``TYPE_OVERRIDES`` with the reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DOCUMENT = HERE.parent.parent / "shared" / "reference" / "captaindata-v4-openapi.json"
DEFAULT_OUT = HERE.parent / "airflow_provider_captaindata" / "client" / "catalog" / "actions.json"

MODES = ("live", "async", "schedule")
ACTION_PATH = re.compile(r"^/actions/(?P<name>[a-z0-9-]+)/run/(?P<mode>live|async|schedule)$")

# The document gives no page size: captaindata-api.md says 10 for LinkedIn search and 25 for
# Sales Navigator. The other paginated actions are assumed to follow their platform's family.
PAGE_SIZE_RULES: tuple[tuple[str, int, str], ...] = (
    ("salesnavigator-", 25, "reference"),
    ("recruiterlite-", 25, "assumed"),
    ("linkedin-search-", 10, "reference"),
    ("linkedin-", 10, "assumed"),
    ("", 10, "assumed"),
)

# Field types the document gets wrong in a way no client could follow: a connection note
# typed ``integer`` with a string default. The emulator must accept what works on the real API.
TYPE_OVERRIDES: dict[tuple[str, str, str], str] = {
    ("linkedin-connect-profile", "parameters", "message"): "string",
}

# Whether a live call may be re-sent after an ambiguous failure (a read timeout, a dropped
# connection, a 5xx, a truncated answer). Every action operation in the document is a POST whose
# tag names only the integration and which has no description, so the one thing the document
# says about what an action does is its operationId / path name: ``<integration>-<verb>-...``.
# Verbs that only read are listed; any other verb (message, connect, comment, invite, like,
# follow, visit, accept, withdraw, archive, mark, ... and any verb a new document adds) has
# effects: a visit shows in "who viewed your profile", a message reaches a person.
READ_VERBS = {
    "extract": "reads data",
    "search": "reads a search's results",
    "me": "reads the identity's own profile",
    "peopleid": "converts an id (linkedin-peopleid-from-salesnavigatorid)",
}
EFFECTS_RULE = (
    "the verb after the integration in the action name (the document's only statement of what an "
    f"action does): {', '.join(sorted(READ_VERBS))} only read and may be re-sent; any other verb "
    "has effects and is never re-sent after an ambiguous failure"
)


def has_effects(name: str) -> bool:
    """True unless the action's verb is one that only reads (see ``READ_VERBS``)."""
    parts = name.split("-")
    return len(parts) < 2 or parts[1] not in READ_VERBS


BRANDS = {
    "linkedin": "LinkedIn",
    "salesnavigator": "Sales Navigator",
    "recruiterlite": "Recruiter Lite",
    "googlemaps": "Google Maps",
    "tripadvisor": "Tripadvisor",
    "thefork": "TheFork",
}
WORDS = {"me": "Me", "peopleid": "People ID", "salesnavigatorid": "Sales Navigator ID", "as": "as"}


def resolve(document: dict[str, Any], node: Any) -> Any:
    """Follow ``$ref`` pointers inside the document (local refs only)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def js_pattern(pattern: str) -> str | None:
    """The document writes most patterns as JavaScript literals (``/.../i``): turn them into
    Python patterns; None when Python's ``re`` cannot compile them (variable look-behind)."""
    flags = ""
    literal = re.fullmatch(r"/(.*)/([gimsuy]*)", pattern, flags=re.DOTALL)
    if literal:
        pattern, js_flags = literal.group(1), literal.group(2)
        flags = "".join(f for f in js_flags if f in "ims")
    python = f"(?{flags}){pattern}" if flags else pattern
    try:
        re.compile(python)
    except re.error:
        return None
    return python


def field_spec(document: dict[str, Any], schema: Any, required: bool, override: str | None) -> dict[str, Any]:
    schema = resolve(document, schema) or {}
    raw_type = schema.get("type")
    nullable = bool(schema.get("nullable"))
    if isinstance(raw_type, list):
        nullable = nullable or "null" in raw_type
        raw_type = next((t for t in raw_type if t != "null"), None)
    # Two input fields carry only a URL pattern and no type.
    spec: dict[str, Any] = {"type": override or raw_type or "string", "required": required}
    if nullable:
        spec["nullable"] = True
    if "enum" in schema:
        spec["enum"] = [v for v in schema["enum"] if v is not None]
    if schema.get("format") and schema["format"] != "string":
        spec["format"] = schema["format"]
    if schema.get("pattern"):
        python = js_pattern(schema["pattern"])
        if python is not None:
            spec["pattern"] = python
    if "default" in schema and override is None:
        spec["default"] = schema["default"]
    return spec


def object_fields(
    document: dict[str, Any], schema: Any, action: str, where: str
) -> tuple[dict[str, Any], list[list[str]]]:
    """Fields of an object schema, with anyOf branches merged in.

    Three input schemas put their real fields only in ``anyOf`` branches (next to
    ``additionalProperties: false`` that, read literally, would reject them): their fields
    are merged and their requirement becomes "one of" (the second return value)."""
    schema = resolve(document, schema) or {}
    required = set(schema.get("required", []))
    fields = {
        name: field_spec(document, sub, name in required, TYPE_OVERRIDES.get((action, where, name)))
        for name, sub in schema.get("properties", {}).items()
    }
    any_of: list[list[str]] = []
    for raw_branch in schema.get("anyOf", []):
        branch = resolve(document, raw_branch)
        branch_required = list(branch.get("required", []))
        for name, sub in branch.get("properties", {}).items():
            fields.setdefault(name, field_spec(document, sub, False, None))
        if branch_required:
            any_of.append(sorted(branch_required))
    fields.pop("custom_data", None)  # always allowed: not one of the action's own fields
    return dict(sorted(fields.items())), any_of


def body_spec(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    schema = resolve(document, schema)
    spec: dict[str, Any] = {
        "fields": sorted(schema.get("properties", {})),
        "required": sorted(schema.get("required", [])),
    }
    inputs = resolve(document, schema.get("properties", {}).get("inputs"))
    if inputs:
        spec["min_inputs"] = inputs.get("minItems", 1)
        spec["max_inputs"] = inputs.get("maxItems")
    any_of = [sorted(b.get("required", [])) for b in schema.get("anyOf", []) if b.get("required")]
    if any_of:
        spec["required_any_of"] = any_of
    return spec


def output_fields(document: dict[str, Any], schema: Any) -> dict[str, str]:
    """``name -> type`` of the result rows; ``type:format`` when the format says more."""
    schema = resolve(document, schema) or {}
    fields: dict[str, str] = {}
    for name, raw_sub in schema.get("properties", {}).items():
        sub = resolve(document, raw_sub)
        kind = sub.get("type", "string")
        if isinstance(kind, list):
            kind = next((t for t in kind if t != "null"), "string")
        fmt = sub.get("format")
        fields[name] = f"{kind}:{fmt}" if fmt and fmt != "string" and kind == "string" else kind
    return dict(sorted(fields.items()))


def title_of(name: str) -> str:
    brand, _, rest = name.partition("-")
    words = [WORDS.get(w, w.capitalize()) for w in rest.split("-")]
    return f"{BRANDS.get(brand, brand.capitalize())}: {' '.join(words)}"


def page_size_of(name: str) -> tuple[int, str]:
    for prefix, size, source in PAGE_SIZE_RULES:
        if name.startswith(prefix):
            return size, source
    raise AssertionError("the last rule matches every name")


def request_schema(operation: dict[str, Any]) -> dict[str, Any]:
    return operation["requestBody"]["content"]["application/json"]["schema"]


def derive_action(
    document: dict[str, Any], name: str, operations: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    action: dict[str, Any] = {"title": title_of(name), "modes": sorted(operations)}
    action["effects"] = has_effects(name)
    tags = next(iter(operations.values())).get("tags") or []
    action["integration"] = tags[0].split("/")[-1].strip() if tags else name.split("-", maxsplit=1)[0]
    action["bodies"] = {
        mode: body_spec(document, request_schema(op)) for mode, op in sorted(operations.items())
    }

    live = operations.get("live")
    answer: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    if live is not None:
        ok = live["responses"]["200"]
        answer = resolve(document, ok["content"]["application/json"]["schema"])
        headers = ok.get("headers") or {}
    returns_array = answer.get("type") == "array"
    action["returns_array"] = returns_array
    if "X-Pagination-Next" in headers:
        # Actions that document only the Next header move with an opaque cursor (the
        # reference: "some actions use a token cursor inside that URL instead of page").
        action["pagination"] = "page" if "X-Pagination-Previous" in headers else "token"
        action["page_size"], action["page_size_source"] = page_size_of(name)
    else:
        action["pagination"] = None
        action["page_size"] = None
    action["output_fields"] = output_fields(document, answer.get("items", answer))

    # Input fields: from the live body's ``input``, else the async body's ``inputs`` items.
    input_schema: Any = None
    parameters: Any = None
    for mode in MODES:
        if mode not in operations:
            continue
        props = resolve(document, request_schema(operations[mode])).get("properties", {})
        if input_schema is None:
            input_schema = props.get("input") or (resolve(document, props.get("inputs")) or {}).get("items")
        if parameters is None:
            parameters = props.get("parameters")
    fields, any_of = object_fields(document, input_schema, name, "input")
    action["input_fields"] = fields
    if any_of:
        action["input_required_any_of"] = any_of
    params, _ = object_fields(document, parameters, name, "parameters")
    action["parameter_fields"] = params
    return action


def derive(document: dict[str, Any], raw: bytes) -> dict[str, Any]:
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for path, item in document["paths"].items():
        match = ACTION_PATH.match(path)
        if match:
            grouped.setdefault(match["name"], {})[match["mode"]] = item["post"]
    actions = {name: derive_action(document, name, ops) for name, ops in sorted(grouped.items())}

    body_fields: dict[str, set[str]] = {mode: set() for mode in MODES}
    for action in actions.values():
        for mode, body in action["bodies"].items():
            body_fields[mode].update(body["fields"])
    any_async = next(ops["async"] for ops in grouped.values() if "async" in ops)
    callback = resolve(document, request_schema(any_async))["properties"]["callback"]
    return {
        "source": {
            "title": document["info"]["title"],
            "version": document["info"].get("version"),
            "servers": [s["url"] for s in document.get("servers", [])],
            # A 16-digit prefix identifies the document well enough and never looks like an API key.
            "sha256_prefix": hashlib.sha256(raw).hexdigest()[:16],
            "operations": sum(len(v) for v in document["paths"].values()),
        },
        "body_fields": {mode: sorted(fields) for mode, fields in body_fields.items()},
        # Not in the document: the first v4 release's name for identity_ids, which the
        # Quickstart still shows. Accepted wherever identity_ids is.
        "legacy_body_fields": {"integration_users": "identity_ids"},
        "callback_url_pattern": callback["properties"]["url"]["pattern"],
        "effects_rule": EFFECTS_RULE,
        "actions": actions,
    }


def dump(value: Any, depth: int = 0, fold_at: int = 3) -> str:
    """JSON with one line per action part and leaf objects folded on one line: diffable."""
    if depth >= fold_at or not isinstance(value, dict) or not value:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    pad = " " * (depth + 1)
    items = [f"{pad}{json.dumps(k)}: {dump(v, depth + 1, fold_at)}" for k, v in sorted(value.items())]
    return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document", nargs="?", type=Path, default=DEFAULT_DOCUMENT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="fail if the output file is stale")
    args = parser.parse_args(argv)

    raw = args.document.read_bytes()
    catalog = derive(json.loads(raw), raw)
    text = dump(catalog, fold_at=4) + "\n"
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run scripts/derive_catalog.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"{len(catalog['actions'])} actions written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
