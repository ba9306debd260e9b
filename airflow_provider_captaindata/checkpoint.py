"""Per-input checkpoints of live calls with effects, kept across task retries and worker crashes.

Before an input of an acting action (a message, a connection request) is sent, its record says
``sending``; once answered, ``done`` with its rows. A definite failure (a 4xx) removes the
record, so a task retry sends that input again; anything else stays. A retry therefore sends
only the inputs with no record, reuses the rows of the ``done`` ones, and reports the others
(``sending``: the worker died with the call in flight; ``unknown``: the answer was lost) as
outcome unknown, never sending them again.

The records are never removed by the task itself: a try that sent everything may still fail
after ``execute()`` returns (its XCom push, a worker death before Airflow records the
success), and its retry must find them to return the same outcome without a call. On Airflow
3.3 the state store removes them when Airflow records the success (``[state_store]
clear_on_success``) or at its retention; records beside ``output_path`` stay with the output
(one folder per task instance), removed with it.

Each try claims the records (an ``owner`` entry, its try number) when it opens them, and
checks the claim after writing ``sending`` and before sending: a zombie try that lives on
beside its retry stops instead of sending what the retry sends (:meth:`InputRecords.sending`).

Where the records live, the first that applies:

* Airflow 3.3+: the task instance's ``task_state_store`` (one key per input);
* else, with ``output_path``: one small JSON object per input in a hidden folder beside it;
* else nothing durable is at hand: a retry asks the API instead (``GET /v4/runs`` with
  ``execution_mode=LIVE``) whether this action ran since the DAG run started, and sends
  nothing if it did (the API lists no input per live run, so it cannot say which ones).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from typing import Any, Protocol

from airflow_provider_captaindata.exceptions import CaptainDataError

log = logging.getLogger(__name__)

SENDING = "sending"
DONE = "done"
UNKNOWN = "unknown"
KEY_PREFIX = "captaindata_live_input/"
OWNER = "owner"  # the key of the try that holds the records
# A try reuses the claim it read for this long; a retry waits CLAIM_SETTLE_SECONDS after its
# claim before reading records. The margin between them covers two processes' timers.
OWNER_FRESH_SECONDS = 0.5
CLAIM_SETTLE_SECONDS = 2.0


def call_mark(action: str, body: Any) -> str:
    """The mark of one call in its record: what was sent, so a record only counts for the same
    call (a retry after the inputs changed sends the new ones). Not a launch's fingerprint
    (:func:`~airflow_provider_captaindata.launch_identity.fingerprint`), which names a run."""
    canonical = json.dumps([action, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def record_keys(action: str, bodies: list[Any]) -> list[str]:
    """Each input's record key in a fan-out: what is sent, not where it sits in the list (a
    clear after the inputs were reordered, or one was added in front, finds each input's
    record), and which repeat of an equal input it is (each repeat is its own call)."""
    repeats: dict[str, int] = {}
    keys = []
    for body in bodies:
        mark = call_mark(action, body)
        keys.append(f"{mark}-{repeats.get(mark, 0)}")
        repeats[mark] = repeats.get(mark, 0) + 1
    return keys


class SupersededTryError(CaptainDataError):
    """A later try of this task instance claimed the records: this one (a zombie) stops."""


class Checkpoint(Protocol):
    """Small JSON records by key (an input's, or :data:`OWNER`)."""

    where: str
    # Whether a fan-out makes its calls in threads (network round trips) or on its loop.
    offload: bool
    # Whether another try may look elsewhere (the path it renders): then finding no earlier
    # try's claim proves nothing.
    follows_output_path: bool

    def get(self, key: str) -> Any: ...

    def put(self, key: str, record: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class StateStoreCheckpoint:
    """Records in Airflow 3.3's ``task_state_store``: they survive tries of this task instance."""

    where = "the task state store"
    # On the loop: Airflow's task comms are not reachable from other threads under dag.test.
    offload = False
    follows_output_path = False

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, key: str) -> Any:
        return self.store.get(f"{KEY_PREFIX}{key}")

    def put(self, key: str, record: Any) -> None:
        self.store.set(f"{KEY_PREFIX}{key}", record)

    def delete(self, key: str) -> None:
        self.store.delete(f"{KEY_PREFIX}{key}")


class FileCheckpoint:
    """Records as ``{key}.json`` in a hidden folder beside ``output_path`` (any object store),
    one folder per task instance."""

    offload = True
    follows_output_path = True

    def __init__(self, output_path: str, scope: str) -> None:
        from airflow_provider_captaindata.results import object_storage_path

        final = object_storage_path(output_path)
        self.folder = final.parent / f".{final.name}.{scope}.checkpoint"
        self.where = str(self.folder)
        # Whole-object calls on the filesystem: one request each (opening a file object to
        # read asks the store for its size first), and far less CPU per record.
        self.fs = self.folder.fs
        self._prefix = self.folder.path.rstrip("/") + "/"
        self._made = False

    def get(self, key: str) -> Any:
        try:
            data = self.fs.cat_file(f"{self._prefix}{key}.json")
        except FileNotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError:  # cut short by a crash while it was written: it may have been sent
            return {"state": SENDING, "fp": None}

    def put(self, key: str, record: Any) -> None:
        if not self._made:  # once per try: a mkdir is a round trip on an object store
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made = True
        self.fs.pipe_file(f"{self._prefix}{key}.json", json.dumps(record, default=str).encode())

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{self._prefix}{key}.json")


class InputRecords:
    """The records of one task instance's inputs, read only on a task retry, held by one try."""

    def __init__(self, checkpoint: Checkpoint, resumed: bool, try_number: int = 1) -> None:
        self.checkpoint = checkpoint
        self.resumed = resumed
        self.try_number = try_number
        self.where = checkpoint.where
        self.offload = checkpoint.offload
        self._owner_lock = threading.Lock()
        self._owner_seen: tuple[Any, float] = (None, float("-inf"))

    def claim(self) -> None:
        """This try holds the records from now on: an earlier try still running (a zombie)
        stops. A retry then waits :data:`CLAIM_SETTLE_SECONDS` before reading any record (see
        :meth:`sending`)."""
        self.checkpoint.put(OWNER, self.try_number)
        if self.resumed:
            time.sleep(CLAIM_SETTLE_SECONDS)

    def may_miss_earlier_tries(self) -> bool:
        """Whether an earlier try may have kept its records elsewhere: this is a retry, they
        follow a rendered output_path, and no try claimed these (read before :meth:`claim`;
        a first try reads nothing)."""
        return self.resumed and self.checkpoint.follows_output_path and self.checkpoint.get(OWNER) is None

    def earlier(self, key: int | str, mark: str) -> dict[str, Any] | None:
        """An earlier try's record of this same call (``done`` with rows, or its outcome unknown)."""
        if not self.resumed:
            return None
        record = self.checkpoint.get(str(key))
        if not isinstance(record, dict):
            return None
        # A record cut short by a crash has no mark: it may be this call, so it counts.
        return record if record.get("fp") in (mark, None) else None

    def sending(self, key: int | str, mark: str) -> None:
        """Record the call as sent, then make sure no later try holds the records (raises
        :class:`SupersededTryError` if one does).

        The claim is read at most every :data:`OWNER_FRESH_SECONDS`, not per input. Still, no
        input is sent by this try and a later one: if this record is written after the later
        try read it (at least CLAIM_SETTLE_SECONDS after its claim), the claim this check uses
        was read less than OWNER_FRESH_SECONDS before, so after the claim, and it stops."""
        self.checkpoint.put(str(key), {"state": SENDING, "fp": mark, "try": self.try_number})
        owner = self._owner()
        if owner is not None and owner != self.try_number:
            raise SupersededTryError(
                f"try {owner} of this task holds the records in {self.where}; try "
                f"{self.try_number} stops before sending input {key}"
            )

    def _owner(self) -> Any:
        with self._owner_lock:
            owner, read_at = self._owner_seen
        if time.monotonic() - read_at < OWNER_FRESH_SECONDS:
            return owner
        started = time.monotonic()  # when the read began: what it returns is no older
        owner = self.checkpoint.get(OWNER)
        with self._owner_lock:
            if started > self._owner_seen[1]:
                self._owner_seen = (owner, started)
        return owner

    def outcome(
        self, key: int | str, mark: str, state: str, rows: list[Any] | None = None, result: Any = None
    ) -> None:
        """``done`` (with the rows of a fan-out input, or the ``result`` a single input's task
        returned) or ``unknown`` is kept; anything else was refused and nothing happened, so
        the record goes and a task retry may send the input again."""
        if state == DONE:
            done = {"state": DONE, "fp": mark, "rows": rows or []}
            self.checkpoint.put(str(key), done if result is None else {**done, "result": result})
        elif state == UNKNOWN:
            self.checkpoint.put(str(key), {"state": UNKNOWN, "fp": mark})
        else:
            self.checkpoint.delete(str(key))


def open_records(context: Any, output_path: str | None) -> InputRecords | None:
    """The durable records of this task's inputs, or None (see the module docstring)."""
    store = context.get("task_state_store")
    if store is not None:
        checkpoint: Checkpoint = StateStoreCheckpoint(store)
    elif output_path:
        checkpoint = FileCheckpoint(output_path, _scope(context))
    else:
        return None
    return InputRecords(checkpoint, is_retry(context), try_number(context))


def try_number(context: Any) -> int:
    return int(getattr(context.get("ti"), "try_number", 1) or 1)


def is_retry(context: Any) -> bool:
    return try_number(context) > 1


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
