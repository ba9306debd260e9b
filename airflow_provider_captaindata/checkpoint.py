"""Per-input checkpoints of live calls with effects, kept across task retries and worker crashes.

Before an input of an acting action (a message, a connection request) is sent, its record says
``sending``; once answered, ``done`` with its rows. A definite failure (a 4xx) removes the
record, so a task retry sends that input again; anything else stays. A retry therefore sends
only the inputs with no record, reuses the rows of the ``done`` ones, and reports the others
(``sending``: the worker died with the call in flight; ``unknown``: the answer was lost) as
outcome unknown, never sending them again.

Where the records live, the first that applies:

* Airflow 3.3+: the task instance's ``task_state_store`` (one key per input);
* else, with ``output_path``: one small JSON object per input in a hidden folder beside it;
* else nothing durable is at hand: a retry asks the API instead (``GET /v4/runs`` with
  ``execution_mode=LIVE``) whether this action ran since the DAG run started, and sends
  nothing if it did (the API lists no input per live run, so it cannot say which ones).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

SENDING = "sending"
DONE = "done"
UNKNOWN = "unknown"
KEY_PREFIX = "captaindata_live_input/"


def fingerprint(action: str, body: Any) -> str:
    """What was sent, so a record only counts for the same call (a retry after the inputs
    changed sends the new ones)."""
    canonical = json.dumps([action, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


class Checkpoint(Protocol):
    where: str

    def get(self, index: int) -> dict[str, Any] | None: ...

    def put(self, index: int, record: dict[str, Any]) -> None: ...

    def delete(self, index: int) -> None: ...

    def clear(self, count: int) -> None: ...


class StateStoreCheckpoint:
    """Records in Airflow 3.3's ``task_state_store``: they survive tries of this task instance."""

    where = "the task state store"

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, index: int) -> dict[str, Any] | None:
        value = self.store.get(f"{KEY_PREFIX}{index}")
        return value if isinstance(value, dict) else None

    def put(self, index: int, record: dict[str, Any]) -> None:
        self.store.set(f"{KEY_PREFIX}{index}", record)

    def delete(self, index: int) -> None:
        self.store.delete(f"{KEY_PREFIX}{index}")

    def clear(self, count: int) -> None:
        for index in range(count):
            self.delete(index)


class FileCheckpoint:
    """Records as ``{index}.json`` in a hidden folder beside ``output_path`` (any object store),
    one folder per task instance."""

    def __init__(self, output_path: str, scope: str) -> None:
        from airflow_provider_captaindata.results import object_storage_path

        final = object_storage_path(output_path)
        self.folder = final.parent / f".{final.name}.{scope}.checkpoint"
        self.where = str(self.folder)

    def get(self, index: int) -> dict[str, Any] | None:
        path = self.folder / f"{index}.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            value = json.loads(text)
        except ValueError:  # cut short by a crash while it was written: it may have been sent
            return {"state": SENDING, "fp": None}
        return value if isinstance(value, dict) else None

    def put(self, index: int, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{index}.json").write_text(json.dumps(record, default=str), encoding="utf-8")

    def delete(self, index: int) -> None:
        (self.folder / f"{index}.json").unlink(missing_ok=True)

    def clear(self, count: int) -> None:
        for index in range(count):
            self.delete(index)
        try:
            self.folder.rmdir()
        except OSError as exc:  # object stores have no folders to remove; a local one may linger
            log.debug("Checkpoint folder %s not removed: %s", self.folder, exc)


class InputRecords:
    """The records of one task instance's inputs, read only on a task retry."""

    def __init__(self, checkpoint: Checkpoint, resumed: bool) -> None:
        self.checkpoint = checkpoint
        self.resumed = resumed
        self.where = checkpoint.where

    def earlier(self, index: int, mark: str) -> dict[str, Any] | None:
        """An earlier try's record of this same call (``done`` with rows, or its outcome unknown)."""
        if not self.resumed:
            return None
        record = self.checkpoint.get(index)
        # A record cut short by a crash has no fingerprint: it may be this call, so it counts.
        return record if record is not None and record.get("fp") in (mark, None) else None

    def sending(self, index: int, mark: str) -> None:
        self.checkpoint.put(index, {"state": SENDING, "fp": mark})

    def outcome(self, index: int, mark: str, state: str, rows: list[Any] | None = None) -> None:
        """``done`` (with the rows) or ``unknown`` is kept; anything else was refused and nothing
        happened, so the record goes and a task retry may send the input again."""
        if state == DONE:
            self.checkpoint.put(index, {"state": DONE, "fp": mark, "rows": rows or []})
        elif state == UNKNOWN:
            self.checkpoint.put(index, {"state": UNKNOWN, "fp": mark})
        else:
            self.checkpoint.delete(index)

    def clear(self, count: int) -> None:
        self.checkpoint.clear(count)


def open_records(context: Any, output_path: str | None) -> InputRecords | None:
    """The durable records of this task's inputs, or None (see the module docstring)."""
    store = context.get("task_state_store")
    if store is not None:
        checkpoint: Checkpoint = StateStoreCheckpoint(store)
    elif output_path:
        checkpoint = FileCheckpoint(output_path, _scope(context))
    else:
        return None
    return InputRecords(checkpoint, is_retry(context))


def is_retry(context: Any) -> bool:
    return int(getattr(context.get("ti"), "try_number", 1) or 1) > 1


def _scope(context: Any) -> str:
    """This task instance, so two DAG runs writing to one output_path never share records."""
    ti = context.get("ti")
    raw = "|".join(
        str(v)
        for v in (
            getattr(ti, "dag_id", ""),
            getattr(ti, "task_id", ""),
            context.get("run_id"),
            getattr(ti, "map_index", -1),
        )
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:12]
