"""A run's delivery records (``GET /runs/callbacks``) set against its stored pages, and the
replays that fill the gaps: the moving parts of :func:`.reconcile.reconcile_run`.

* :class:`Record`: one delivery record, whatever shape the hook returned;
* :func:`list_callback_records`: every record of a run, paged when the hook can;
* :class:`Replays`: replays asked of the API, within its budget per page;
* :class:`RunPages`: the records by batch uid, which batches are short of pages, one round of
  replays, and following deliveries still in flight.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from airflow_provider_captaindata.callbacks.storage import CallbackStore, batch_of, is_uuid
from airflow_provider_captaindata.exceptions import CaptainDataAPIError, CaptainDataError

MAX_REPLAYS = 3  # what the API allows per callback
RECORDS_PER_CALL = 20  # the API's maximum ``limit`` for GET /runs/callbacks (default 10)
IN_FLIGHT = frozenset({"PENDING", "RUNNING"})

log = logging.getLogger("airflow_provider_captaindata.callbacks.reconcile")  # one logger for reconciling


class CallbackHook(Protocol):
    """What reconciling needs from ``CaptainDataHook``."""

    def list_run_callbacks(self, run_uid: str) -> Sequence[Any]: ...

    def replay_run_callback(self, callback_uid: str) -> Any: ...


@dataclass(frozen=True)
class Record:
    """One delivery record, whatever the hook returned (pydantic model or dict)."""

    uid: str
    batch_uid: str | None
    status: str
    http_status: int | None
    retry_count: int
    parent_uid: str | None
    created_at: str

    @classmethod
    def of(cls, obj: Any, *, default_uid: str = "") -> Record:
        data: Mapping[str, Any] = (
            obj.model_dump() if hasattr(obj, "model_dump") else obj if isinstance(obj, Mapping) else {}
        )
        batch = data.get("batch_uid")
        return cls(
            uid=str(data.get("uid") or default_uid),
            batch_uid=str(batch).lower() if is_uuid(batch) else None,
            status=str(data.get("status") or "").upper(),
            http_status=data.get("http_status"),
            retry_count=int(data.get("retry_count") or 0),
            parent_uid=data.get("parent_uid"),
            created_at=str(data.get("created_at") or ""),
        )


def list_callback_records(hook: CallbackHook, run_uid: str, *, log: Any = log) -> list[Record]:
    """Every delivery record of a run. The API answers at most 20 per call: when the hook takes
    ``limit``/``offset``/``sort``, page through them in creation order (new records, from replays,
    land at the end, so no page shifts under us)."""
    records: dict[str, Record] = {}
    if takes_paging(hook.list_run_callbacks):
        offset = 0
        while True:
            page = hook.list_run_callbacks(  # type: ignore[call-arg]
                run_uid, limit=RECORDS_PER_CALL, offset=offset, sort="created_at"
            )
            for item in page:
                record = Record.of(item)
                records[record.uid] = record
            if len(page) < RECORDS_PER_CALL:
                break
            offset += len(page)
    else:
        page = hook.list_run_callbacks(run_uid)
        for item in page:
            record = Record.of(item)
            records[record.uid] = record
        if len(page) in (10, RECORDS_PER_CALL):
            log.warning(
                "list_run_callbacks returned %s records for run %s, exactly one API page: if the hook "
                "does not page, later records are not reconciled (their stored pages are still read)",
                len(page),
                run_uid,
            )
    return list(records.values())


def takes_paging(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return all(name in parameters for name in ("limit", "offset", "sort"))


class Replays:
    """Replays asked of the API for one run, within its budget of ``MAX_REPLAYS`` per page."""

    def __init__(self, hook: CallbackHook, log: Any) -> None:
        self.hook = hook
        self.log = log
        self.used: dict[str, int] = {}  # per original callback, the API's own count included
        self.errors: dict[str, int] = {}  # per original callback: failed asks (budget unknown)
        self.made = 0

    def exhausted(self, target: Record, records: Sequence[Record]) -> bool:
        self.used.setdefault(target.uid, max(r.retry_count for r in _chain(records, target)))
        return self.used[target.uid] >= MAX_REPLAYS or self.errors.get(target.uid, 0) >= MAX_REPLAYS

    def ask(self, batch: str, target: Record) -> tuple[Record | None, bool]:
        """Replay ``target``: the delivery record of the replay (None when refused or failed),
        and whether waiting may still bring the page."""
        try:
            answer = Record.of(self.hook.replay_run_callback(target.uid), default_uid=target.uid)
        except CaptainDataAPIError as exc:
            hope = exc.status_code != 400
            if hope:
                self.errors[target.uid] = self.errors.get(target.uid, 0) + 1
            else:  # MAX_REPLAYS_REACHED or gone: no budget left
                self.used[target.uid] = MAX_REPLAYS
            self.log.warning("Replay of page %s (callback %s) refused: %s", batch, target.uid, exc)
            return None, hope
        except CaptainDataError as exc:
            self.errors[target.uid] = self.errors.get(target.uid, 0) + 1
            self.log.warning("Replay of page %s (callback %s) failed: %s", batch, target.uid, exc)
            return None, True
        self.made += 1
        self.used[target.uid] += 1
        # A replay is never an original page, whatever the answer carries. SUCCESS: the page is
        # stored (we answered 2xx); FAILED: worth another try while budget is left.
        answer = replace(answer, parent_uid=answer.parent_uid or target.uid)
        return answer, answer.status == "SUCCESS" or self.used[target.uid] < MAX_REPLAYS


class RunPages:
    """One run's delivery records by batch uid, set against the pages in storage."""

    def __init__(
        self,
        hook: CallbackHook,
        store: CallbackStore,
        *,
        launch_key: str,
        run_uid: str,
        log: Any,
        relist_every: float,
    ) -> None:
        self.hook = hook
        self.store = store
        self.launch_key = launch_key
        self.run_uid = run_uid
        self.log = log
        self.relist_every = relist_every
        self.by_batch = group_records(list_callback_records(hook, run_uid, log=log), run_uid, log)
        self.listed_at = time.monotonic()
        self.in_flight: set[str] = set()  # batches whose delivery is still going: awaited
        self.replays = Replays(hook, log)

    def short_batches(self) -> set[str]:
        stored = Counter(batch_of(page) for page in self.store.page_ids(self.launch_key, self.run_uid))
        return {
            batch
            for batch, recs in self.by_batch.items()
            if stored[batch] < pages_in(recs) or not confirmed(recs)
        }

    def delivering(self, batch: str) -> bool:
        return any(r.status in IN_FLIGHT for r in self.by_batch[batch])

    def replay(self, missing: set[str]) -> bool:
        """Replay the missing batches not being delivered; whether waiting may still help."""
        hope = bool(self.in_flight)
        for batch in sorted(missing - self.in_flight):
            hope = self._replay_batch(batch) or hope
        return hope

    def _replay_batch(self, batch: str) -> bool:
        hope = False
        for target in _replay_targets(self.by_batch[batch]):
            if self.replays.exhausted(target, self.by_batch[batch]):
                continue
            answer, more = self.replays.ask(batch, target)
            hope = hope or more
            if answer is not None:
                self.by_batch[batch].append(answer)
                if answer.status not in ("SUCCESS", "FAILED"):
                    # Delivery still going (or an answer we cannot read): the records say how it ends.
                    self.in_flight.add(batch)
        return hope or batch in self.in_flight

    def follow_deliveries(self, missing: set[str]) -> set[str]:
        """Forget deliveries that arrived; list the records again, now and then, while some are
        still going: they tell whether a delivery ended (then it is replayed). Returns the
        batches still missing."""
        self.in_flight &= missing
        if not self.in_flight or time.monotonic() - self.listed_at < self.relist_every:
            return missing
        fresh = group_records(
            list_callback_records(self.hook, self.run_uid, log=self.log), self.run_uid, self.log
        )
        for batch in list(self.by_batch):
            self.by_batch[batch] = fresh.get(batch, self.by_batch[batch])
        self.listed_at = time.monotonic()
        self.in_flight = {batch for batch in self.in_flight if self.delivering(batch)}
        return self.short_batches()  # what the fresh records confirm is no longer missing


def group_records(records: Sequence[Record], run_uid: str, log: Any) -> dict[str, list[Record]]:
    by_batch: dict[str, list[Record]] = {}
    for record in records:
        if record.batch_uid is None:
            log.warning("Run %s: callback record %s has no valid batch uid; ignored", run_uid, record.uid)
            continue
        by_batch.setdefault(record.batch_uid, []).append(record)
    return by_batch


def _originals(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.parent_uid is None]


def confirmed(records: Sequence[Record]) -> bool:
    """The API's records show each page of this batch reaching the receiver: in every original's
    chain (its delivery or a replay) a SUCCESS, or a 2xx answer (the receiver answers 2xx only
    once the page is written, so a FAILED record with ``http_status`` 200 still counts). A stored
    page without one may have been posted by anyone holding the launch's URL (a forger filling
    a batch the task log named missing), so it is not read before a replay confirms it: the
    same page overwrites its own file, another one adds a file and the batch is ambiguous."""
    originals = _originals(records) or list(records)
    return all(any(_reached(r) for r in _chain(records, o)) for o in originals)


def _reached(record: Record) -> bool:
    status = record.http_status
    answered = isinstance(status, int) and not isinstance(status, bool) and 200 <= status < 300
    return record.status == "SUCCESS" or answered


def pages_in(records: Sequence[Record]) -> int:
    """Pages under one batch uid: its original callbacks (replays and duplicates are not pages)."""
    return max(1, len(_originals(records)))


def _chain(records: Sequence[Record], original: Record) -> list[Record]:
    return [r for r in records if original.uid in (r.uid, r.parent_uid)]


def _replay_targets(records: Sequence[Record]) -> list[Record]:
    """What to replay for a batch short of pages, or of confirmed deliveries. Replays count
    against the original callback: replay it, not one of its replays. One page: its original.
    Several: we cannot tell which stored file is which, so the originals never acknowledged
    (no SUCCESS in their chain), or all of them; a page replayed again only overwrites its own file."""
    originals = _originals(records)
    if len(originals) <= 1:
        return [min(originals or list(records), key=lambda r: r.created_at)]
    unacknowledged = [o for o in originals if all(r.status != "SUCCESS" for r in _chain(records, o))]
    return sorted(unacknowledged or originals, key=lambda r: r.created_at)
