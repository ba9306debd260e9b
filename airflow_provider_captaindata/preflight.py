"""Checks made before a run is launched, so that no run is launched into a trap.

* :func:`check_trigger_can_read_connection`: a deferred wait reads its connection where the
  trigger runs. Under ``airflow dags test`` (and ``dag.test()``) on Airflow 3 the trigger runs
  inline, in a context whose secrets lookup searches only environment variables and external
  secrets backends, not the metadata database: a connection made with ``airflow connections
  add`` or in the UI is found by the task, which launches the run, and not by the trigger,
  which fails, leaving the run going (credits spent on the real API).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_captaindata.exceptions import CaptainDataConfigError

# Word for word in docs/testing.md and docs/troubleshooting.md.
TRIGGER_CANNOT_READ_CONNECTION = (
    "Connection {conn_id!r} cannot be read where this deferred task's trigger runs ({cause}). "
    "`airflow dags test` on Airflow 3 runs the trigger with only environment variables and "
    "external secrets backends, not the metadata database where `airflow connections add` "
    "and the UI store connections. Nothing was launched. Export the connection as "
    "{env_name} (JSON or URI, see the getting-started page), or set deferrable=False for this test."
)


def in_process_test_supervisor() -> Any:
    """Airflow 3's in-process test supervisor class when this task runs under ``dags test``
    / ``dag.test()``, else None (a real worker, or Airflow 2, whose inline trigger reads the
    metadata database like the task)."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor
    except ImportError:
        return None
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return InProcessTestSupervisor if type(comms).__name__ == "InProcessSupervisorComms" else None


class _ConnectionProbe:
    """Reads the connection as the trigger will (the async hook's lookup), in the context the
    test supervisor gives triggers; yields None when found, else the error."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    async def run(self) -> AsyncIterator[BaseException | None]:
        from airflow_provider_captaindata.hooks.captaindata_async import CaptainDataAsyncHook

        try:
            await CaptainDataAsyncHook(self.conn_id)._read_settings()
        except CaptainDataConfigError:
            yield None  # found: a bad field fails the same way on the worker, before a launch
        except Exception as exc:
            yield exc
        else:
            yield None


def check_trigger_can_read_connection(conn_id: str, context: Any) -> None:
    """Raise :class:`CaptainDataConfigError` before any launch when the trigger of this
    deferred task will not find ``conn_id`` (only under Airflow 3's ``dags test``; a real
    triggerer reads connections as workers do)."""
    supervisor = in_process_test_supervisor()
    if supervisor is None or not hasattr(supervisor, "run_trigger_in_process"):
        return
    try:
        asyncio.get_running_loop()
        return  # inside an event loop (not how dags test runs a task): cannot probe here
    except RuntimeError:
        pass
    error = supervisor.run_trigger_in_process(trigger=_ConnectionProbe(conn_id), ti=context["ti"])
    if error is None:
        return
    from airflow.providers.common.compat.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception:
        return  # the task cannot read it either: its own error follows, before any launch
    raise CaptainDataConfigError(
        TRIGGER_CANNOT_READ_CONNECTION.format(
            conn_id=conn_id,
            cause=f"{type(error).__name__}: {error}",
            env_name="AIRFLOW_CONN_" + conn_id.upper(),
        )
    )


def check_inputs_against_schema(name: str, inputs: Any, schema: Any, workflow: str) -> None:
    """Raise :class:`CaptainDataConfigError` naming the field when an input does not match the
    workflow's ``input_schema`` (from ``GET /workflows/{uid}/details``): a misspelled field would
    otherwise launch a run that "succeeds" with nothing useful.

    A field the schema does not list is refused unless the schema allows more
    (``additionalProperties``); a schema that is missing or not an object checks nothing."""
    if not isinstance(schema, dict) or not schema:
        return
    import difflib

    import jsonschema

    listed = schema.get("properties")
    properties: dict[str, Any] = listed if isinstance(listed, dict) else {}
    closed = bool(properties) and schema.get("additionalProperties", False) is False
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
    except Exception:  # a schema this library cannot read: the API has the last word
        return
    allowed = ", ".join(sorted(properties)) or "none listed"
    for index, item in enumerate(inputs):
        # Unknown fields first: a misspelled field also leaves its right name missing, and
        # the misspelling is the error to show.
        unknown = sorted(set(item) - set(properties)) if closed else []
        if unknown:
            hint = difflib.get_close_matches(unknown[0], list(properties), n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise CaptainDataConfigError(
                f"{name}[{index}]: unknown input field {unknown[0]!r} for workflow {workflow} "
                f"(its input_schema allows: {allowed}).{did_you_mean} Nothing was launched."
            )
        error = jsonschema.exceptions.best_match(validator.iter_errors(item))
        if error is not None:
            where = f"{name}[{index}]" + "".join(f"[{p!r}]" for p in error.absolute_path)
            raise CaptainDataConfigError(
                f"{where}: {error.message} (workflow {workflow}'s input_schema; fields: {allowed}). "
                "Nothing was launched."
            )
