"""Request bodies and input checks of v4 actions: plain functions, cheap to import from DAG files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_captaindata.exceptions import CaptainDataConfigError

MAX_ASYNC_INPUTS = 100_000


def action_body(
    input: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    identity_ids: Sequence[str] | None,
    identity_mode: str | None,
    integration_users: Sequence[str] | None,
    *,
    inputs: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    # Only what the author set: the API rejects unknown fields, and the legacy
    # integration_users must not be sent beside identity_ids unless asked for.
    body: dict[str, Any] = {}
    if input is not None:
        body["input"] = dict(input)
    if inputs is not None:
        body["inputs"] = [dict(i) for i in inputs]
    if parameters:
        body["parameters"] = dict(parameters)
    if identity_ids is not None:
        body["identity_ids"] = list(identity_ids)
    if identity_mode is not None:
        body["identity_mode"] = identity_mode
    if integration_users is not None:
        body["integration_users"] = list(integration_users)
    return body


def validate_action_input(action: str, input: Mapping[str, Any], *, where: str = "input") -> None:
    """Check ``input`` against the action catalog (the emulator's too) before any HTTP call."""
    from airflow_provider_captaindata.client.catalog import closest_actions, get_action, validate_input

    if get_action(action) is None:
        close = closest_actions(action)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise CaptainDataConfigError(f"action: unknown Captain Data action {action!r}.{hint}")
    if not isinstance(input, Mapping):
        raise CaptainDataConfigError(f"{where} must be a dict of input fields, got {type(input).__name__}")
    problems = validate_input(action, input)
    if problems:
        raise CaptainDataConfigError(f"{where} for action {action!r}: " + "; ".join(problems))


def validate_action_parameters(action: str, parameters: Any) -> None:
    """Check ``parameters`` against the action catalog's parameter fields before any HTTP call:
    a typo is one refused call per input otherwise."""
    from airflow_provider_captaindata.client.catalog import validate_parameters

    if not isinstance(parameters, Mapping):
        raise CaptainDataConfigError(f"parameters must be a dict, got {parameters!r:.80}")
    problems = validate_parameters(action, parameters)
    if problems:
        raise CaptainDataConfigError(f"parameters for action {action!r}: " + "; ".join(problems))
