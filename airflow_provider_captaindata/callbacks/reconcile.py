"""After an async run: make sure every result page arrived, replay what did not, read the rows once.

Captain Data keeps a delivery record per callback attempt (``GET /runs/callbacks?run_uid=``):
the original callbacks (no ``parent_uid``) are the pages, replays point at their original.
The receiver keeps one file per page (``{storage}/{launch_key}/{run_uid}/{batch_uid}.{digest}.json``).
Reconciling compares the two, batch uid by batch uid:

* a batch is complete when it has as many stored pages as original callbacks, whatever the
  records say: the receiver only answers 2xx after a whole page is written, so a "FAILED"
  record with a stored page (the sender gave up waiting for our answer, say) needs nothing.
  The API reference gives one page per batch uid; a batch uid naming an input (several pages)
  is handled the same way, its pages told apart by their content;
* a page with no file (dropped, refused, receiver down) is replayed, at most 3 times per page
  counting the replays already made (the record's ``retry_count``), then awaited with a bound;
* a page still being delivered (``PENDING``/``RUNNING``) is awaited, not replayed.

Only pages of batches the delivery records list are read: a stored file that no record
mentions did not come from this run's deliveries (a forged or stray write) and is ignored.
The rows are then read page by page from storage, in batch uid order: a duplicated or replayed
page overwrote its own file, so no row is ever counted twice, and memory stays one page.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from airflow_provider_captaindata.callbacks.storage import CallbackStore, batch_of, is_uuid
from airflow_provider_captaindata.exceptions import CaptainDataAPIError, CaptainDataError

log = logging.getLogger(__name__)

MAX_REPLAYS = 3  # what the API allows per callback
RECORDS_PER_CALL = 20  # the API's maximum ``limit`` for GET /runs/callbacks (default 10)
IN_FLIGHT = frozenset({"PENDING", "RUNNING"})
DEFAULT_REPLAY_WAIT_SECONDS = 120.0  # how long replayed pages are awaited
MISSING_NAMED = 20  # batch uids named in a message; the report keeps them all


class CallbackHook(Protocol):
    """What reconciling needs from ``CaptainDataHook``."""

    def list_run_callbacks(self, run_uid: str) -> Sequence[Any]: ...

    def replay_run_callback(self, callback_uid: str) -> Any: ...


class MissingPagesError(CaptainDataError):
    """Result pages of an async run never arrived, even after replays, or cannot be told apart."""

    def __init__(
        self,
        run_uid: str,
        missing: Sequence[str],
        expected: int,
        replayed: int,
        ambiguous: Sequence[str] = (),
        *,
        missing_pages: int | None = None,
        unverified: int = 0,
        refused: int = 0,
    ) -> None:
        self.run_uid = run_uid
        self.missing = list(missing)
        self.ambiguous = list(ambiguous)
        self.unverified = unverified
        problems = []
        if self.missing:
            count = len(self.missing) if missing_pages is None else missing_pages
            problems.append(
                f"{count} of {expected} result pages of run {run_uid} never reached the "
                f"callback receiver ({replayed} replays made): batch uids {_named(self.missing)}. Check "
                "that the receiver is reachable at the connection's callback_base_url and stores into "
                "the same callback_storage."
            )
        if refused:
            problems.append(
                f"The receiver refused {refused} of those batches with 403: the callback URL had expired "
                "(it lives as long as the task may wait; set callback_url_ttl for longer) or the "
                "callback secret changed while the run was in flight."
            )
        if self.ambiguous:
            problems.append(
                f"Run {run_uid} has more different pages stored than delivered callbacks for "
                f"{len(self.ambiguous)} batch uids ({_named(self.ambiguous)}): a page was delivered "
                "again with other content, so rows of those batches may be doubled."
            )
        if unverified:
            problems.append(
                f"Run {run_uid}: {unverified} stored pages have no delivery record, and the records may "
                "be incomplete (the hook does not page through them): those pages are not read."
            )
        super().__init__(" ".join(problems))


def _named(uids: Sequence[str]) -> str:
    return ", ".join(uids[:MISSING_NAMED]) + (" ..." if len(uids) > MISSING_NAMED else "")


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


@dataclass
class ReconcileReport:
    """Counts of one run's pages, and the way to read its rows (``iter_pages``)."""

    run_uid: str
    launch_key: str
    storage: str
    expected: int  # pages (original callbacks) in the delivery records
    received: int  # of those, stored
    replayed: int  # replays this reconciliation asked for
    missing: list[str]  # batch uids with pages never stored
    unlisted: int = 0  # stored pages that no record mentions: not read
    ambiguous: list[str] = field(default_factory=list)  # batch uids with more stored pages than callbacks
    page_ids: list[str] = field(default_factory=list)  # the stored pages read, in this order
    records_complete: bool = True  # False: the hook may not have listed every record
    refused: int = 0  # missing batches whose last delivery the receiver answered 403
    rows: int = 0  # rows yielded by iter_pages so far
    pages_with_error: int = 0  # pages whose ``error`` is set (an input failed), seen by iter_pages
    _store: CallbackStore | None = field(default=None, repr=False)

    @property
    def batch_uids(self) -> list[str]:
        """The batch uids of the pages read."""
        return sorted({batch_of(page) for page in self.page_ids})

    @property
    def unverified(self) -> int:
        """Stored pages without a record when the records may be incomplete (they might be real)."""
        return 0 if self.records_complete else self.unlisted

    @property
    def complete(self) -> bool:
        return not self.missing and not self.ambiguous and not self.unverified

    def iter_pages(self) -> Iterator[list[dict[str, Any]]]:
        """Each stored page's result rows, sorted by batch uid, one page in memory at a time.

        A row without ``custom_data`` gets its page's (the input's), so rows can be joined back
        to what the DAG sent."""
        store = self._store or CallbackStore(self.storage)
        for page_id in self.page_ids:
            page = store.read_page(self.launch_key, self.run_uid, page_id)
            custom = page.get("custom_data")
            rows = [row for row in page.get("results") or [] if isinstance(row, dict)]
            if custom is not None:
                rows = [row if "custom_data" in row else {**row, "custom_data": custom} for row in rows]
            if page.get("error"):
                self.pages_with_error += 1
            self.rows += len(rows)
            yield rows

    def summary(self) -> dict[str, Any]:
        """Small, JSON-ready counts for XCom and logs."""
        return {
            "run_uid": self.run_uid,
            "pages_expected": self.expected,
            "pages_received": self.received,
            "pages_replayed": self.replayed,
            "pages_missing": self.expected - self.received,
            "pages_unlisted": self.unlisted,
            "missing_batch_uids": self.missing,
            "ambiguous_batch_uids": self.ambiguous,
        }

    def check(self, on_missing: str = "fail", log: Any = log) -> None:
        """Raise ``MissingPagesError`` (``"fail"``) or log a warning (``"warn"``) unless complete:
        pages missing after replays, or pages that overwrote each other (``ambiguous``)."""
        if on_missing not in ("fail", "warn"):
            raise ValueError(f"on_missing must be 'fail' or 'warn', got {on_missing!r}")
        if self.complete:
            return
        error = MissingPagesError(
            self.run_uid,
            self.missing,
            self.expected,
            self.replayed,
            self.ambiguous,
            missing_pages=self.expected - self.received,
            unverified=self.unverified,
            refused=self.refused,
        )
        if on_missing == "fail":
            raise error
        log.warning("%s", error)


def list_callback_records(hook: CallbackHook, run_uid: str, *, log: Any = log) -> list[Record]:
    """Every delivery record of a run. The API answers at most 20 per call: when the hook takes
    ``limit``/``offset``/``sort``, page through them in creation order (new records, from replays,
    land at the end, so no page shifts under us)."""
    records: dict[str, Record] = {}
    if _takes_paging(hook.list_run_callbacks):
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


def _takes_paging(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return all(name in parameters for name in ("limit", "offset", "sort"))


def reconcile_run(
    hook: CallbackHook,
    run_uid: str,
    launch_key: str,
    storage: str,
    *,
    replay_wait_seconds: float = DEFAULT_REPLAY_WAIT_SECONDS,
    poll_seconds: float = 1.0,
    log: Any = log,
) -> ReconcileReport:
    """Compare a final run's delivery records with the stored pages, replay what is missing,
    wait for it (at most ``replay_wait_seconds``), and report.

    :param hook: a ``CaptainDataHook`` (``list_run_callbacks``, ``replay_run_callback``).
    :param run_uid: the async run, already in a final status.
    :param launch_key: the launch's key, as in its callback URL.
    :param storage: the receiver's ``callback_storage`` URI.
    :param log: where counts and replays are logged (the task's logger).
    """
    store = CallbackStore(storage)
    store.run_folder(launch_key, run_uid)  # validates both ids before anything else
    run_uid = run_uid.lower()
    started = time.monotonic()
    deadline = started + max(0.0, replay_wait_seconds)
    relist_every = max(5.0, 5 * poll_seconds)

    def short_batches() -> set[str]:
        stored = Counter(batch_of(page) for page in store.page_ids(launch_key, run_uid))
        return {batch for batch, recs in by_batch.items() if stored[batch] < _pages_in(recs)}

    records = list_callback_records(hook, run_uid, log=log)
    by_batch = _group(records, run_uid, log)
    missing = short_batches()
    if missing:
        log.info(
            "Run %s: %s of %s batches short of pages; replaying them (up to %s times each)",
            run_uid,
            len(missing),
            len(by_batch),
            MAX_REPLAYS,
        )

    used: dict[str, int] = {}  # replays made per original callback, the API's count included
    in_flight = {batch for batch in missing if any(r.status in IN_FLIGHT for r in by_batch[batch])}
    errors: dict[str, int] = {}
    replayed = 0
    listed_at = time.monotonic()
    while missing:
        hope = bool(in_flight)
        for batch in sorted(missing - in_flight):
            for target in _replay_targets(by_batch[batch]):
                used.setdefault(target.uid, max(r.retry_count for r in _chain(by_batch[batch], target)))
                if used[target.uid] >= MAX_REPLAYS or errors.get(target.uid, 0) >= MAX_REPLAYS:
                    continue
                try:
                    answer = Record.of(hook.replay_run_callback(target.uid), default_uid=target.uid)
                    # A replay is never an original page, whatever the answer carries.
                    answer = replace(answer, parent_uid=answer.parent_uid or target.uid)
                except CaptainDataAPIError as exc:
                    if exc.status_code == 400:  # MAX_REPLAYS_REACHED or gone: no budget left
                        used[target.uid] = MAX_REPLAYS
                    else:
                        errors[target.uid] = errors.get(target.uid, 0) + 1
                        hope = True
                    log.warning("Replay of page %s (callback %s) refused: %s", batch, target.uid, exc)
                    continue
                except CaptainDataError as exc:
                    errors[target.uid] = errors.get(target.uid, 0) + 1
                    hope = True
                    log.warning("Replay of page %s (callback %s) failed: %s", batch, target.uid, exc)
                    continue
                replayed += 1
                used[target.uid] += 1
                by_batch[batch].append(answer)
                if answer.status not in ("SUCCESS", "FAILED"):
                    # Delivery still going (or an answer we cannot read): wait, and let the
                    # records say how it ended.
                    in_flight.add(batch)
                # SUCCESS: the page is stored (we answered 2xx); FAILED: again if budget is left.
                hope = hope or answer.status == "SUCCESS" or used[target.uid] < MAX_REPLAYS
            hope = hope or batch in in_flight
        missing = short_batches()
        if not missing or not hope or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))
        missing = short_batches()
        in_flight &= missing
        if in_flight and time.monotonic() - listed_at >= relist_every:
            # Deliveries still in flight: their records tell whether they ended (then replay).
            fresh = _group(list_callback_records(hook, run_uid, log=log), run_uid, log)
            for b in list(by_batch):
                by_batch[b] = fresh.get(b, by_batch[b])
            listed_at = time.monotonic()
            in_flight = {b for b in in_flight if any(r.status in IN_FLIGHT for r in by_batch[b])}

    return _report(
        hook,
        store,
        by_batch,
        run_uid=run_uid,
        launch_key=launch_key,
        storage=storage,
        replayed=replayed,
        started=started,
        log=log,
    )


def _report(
    hook: CallbackHook,
    store: CallbackStore,
    by_batch: Mapping[str, Sequence[Record]],
    *,
    run_uid: str,
    launch_key: str,
    storage: str,
    replayed: int,
    started: float,
    log: Any,
) -> ReconcileReport:
    stored: dict[str, list[str]] = {}
    for page in store.page_ids(launch_key, run_uid):
        stored.setdefault(batch_of(page), []).append(page)
    expected = {batch: _pages_in(recs) for batch, recs in by_batch.items()}
    page_ids: list[str] = []
    for batch in sorted(expected):
        pages = stored.get(batch, [])
        # One page per batch uid (the API reference): extra files are that page delivered again
        # with other content; read one. Several pages per batch uid: read them all.
        page_ids.extend(pages[:1] if expected[batch] == 1 else pages)
    received = sum(min(len(stored.get(batch, [])), n) for batch, n in expected.items())
    unlisted = sum(len(pages) for batch, pages in stored.items() if batch not in expected)
    report = ReconcileReport(
        run_uid=run_uid,
        launch_key=launch_key,
        storage=storage,
        expected=sum(expected.values()),
        received=received,
        replayed=replayed,
        missing=sorted(b for b, n in expected.items() if len(stored.get(b, [])) < n),
        unlisted=unlisted,
        ambiguous=sorted(b for b, n in expected.items() if n > 1 and len(stored.get(b, [])) > n),
        page_ids=page_ids,
        refused=sum(
            1
            for b, n in expected.items()
            if len(stored.get(b, [])) < n and max(by_batch[b], key=lambda r: r.created_at).http_status == 403
        ),
        records_complete=_takes_paging(hook.list_run_callbacks)
        or sum(len(recs) for recs in by_batch.values()) not in (10, RECORDS_PER_CALL),
        _store=store,
    )
    log.info(
        "Run %s result pages: %s expected, %s received, %s replayed, %s missing (%.1f s)",
        run_uid,
        report.expected,
        report.received,
        report.replayed,
        report.expected - report.received,
        time.monotonic() - started,
    )
    if report.unlisted:
        log.warning(
            "Run %s: %s stored pages have no delivery record: not read (not from this run's deliveries)",
            run_uid,
            report.unlisted,
        )
    if report.missing:
        log.warning("Run %s: pages never received in batches %s", run_uid, _named(report.missing))
    if report.ambiguous:
        log.warning(
            "Run %s: %s batch uids have more different pages stored than callbacks delivered (e.g. %s)",
            run_uid,
            len(report.ambiguous),
            report.ambiguous[0],
        )
    return report


def _group(records: Sequence[Record], run_uid: str, log: Any) -> dict[str, list[Record]]:
    by_batch: dict[str, list[Record]] = {}
    for record in records:
        if record.batch_uid is None:
            log.warning("Run %s: callback record %s has no valid batch uid; ignored", run_uid, record.uid)
            continue
        by_batch.setdefault(record.batch_uid, []).append(record)
    return by_batch


def _originals(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.parent_uid is None]


def _pages_in(records: Sequence[Record]) -> int:
    """Pages under one batch uid: its original callbacks (replays and duplicates are not pages)."""
    return max(1, len(_originals(records)))


def _chain(records: Sequence[Record], original: Record) -> list[Record]:
    return [r for r in records if original.uid in (r.uid, r.parent_uid)]


def _replay_targets(records: Sequence[Record]) -> list[Record]:
    """What to replay for a batch short of pages. Replays count against the original callback:
    replay it, not one of its replays. One page: its original. Several: we cannot tell which
    stored file is which, so the originals never acknowledged (no SUCCESS in their chain), or
    all of them; a page replayed again only overwrites its own file."""
    originals = _originals(records)
    if len(originals) <= 1:
        return [min(originals or list(records), key=lambda r: r.created_at)]
    unacknowledged = [o for o in originals if all(r.status != "SUCCESS" for r in _chain(records, o))]
    return sorted(unacknowledged or originals, key=lambda r: r.created_at)
