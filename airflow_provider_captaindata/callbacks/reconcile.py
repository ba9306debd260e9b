"""After an async run: make sure every result page arrived, replay what did not, read the rows once.

Captain Data keeps a delivery record per callback attempt (``GET /runs/callbacks?run_uid=``):
the original callbacks (no ``parent_uid``) are the pages, replays point at their original.
The receiver keeps one file per page (``{storage}/{launch_key}/{run_uid}/{batch_uid}.{digest}.json``).
Reconciling compares the two, batch uid by batch uid:

* a batch is complete when it has exactly as many stored pages as original callbacks and the
  records show each page reaching the receiver (a SUCCESS or a 2xx answer in its chain: the
  receiver answers 2xx only once a page is written). A stored page without one (the sender
  gave up before our answer, say) is replayed to be confirmed: the same page overwrites its
  own file. This is what keeps a page posted by
  someone holding the URL (filling a batch the task log named missing) out of the results;
* more stored pages than original callbacks under a batch uid: pages that differ were posted
  under it, so the batch is ambiguous, not read, and named (the task fails). The API
  reference gives one page per batch uid; a batch uid naming an input (several pages) is
  handled the same way, its pages told apart by their content;
* a page with no file (dropped, refused, receiver down) is replayed, at most 3 times per page
  counting the replays already made (the record's ``retry_count``), then awaited with a bound;
* a page still being delivered (``PENDING``/``RUNNING``) is awaited, not replayed.

Only pages of batches the delivery records list are read: a stored file that no record
mentions did not come from this run's deliveries (a forged or stray write) and is ignored.
The rows are then read page by page from storage, in batch uid order: a duplicated or replayed
page overwrote its own file, so no row is ever counted twice, and memory stays one page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_captaindata.callbacks.deliveries import (
    MAX_REPLAYS,
    RECORDS_PER_CALL,
    CallbackHook,
    Record,
    RunPages,
    confirmed,
    list_callback_records,
    pages_in,
    takes_paging,
)
from airflow_provider_captaindata.callbacks.storage import CallbackStore, batch_of
from airflow_provider_captaindata.exceptions import CaptainDataError

__all__ = [
    "DEFAULT_REPLAY_WAIT_SECONDS",
    "MAX_REPLAYS",
    "MissingPagesError",
    "ReconcileReport",
    "Record",
    "list_callback_records",
    "reconcile_run",
]

log = logging.getLogger(__name__)

DEFAULT_REPLAY_WAIT_SECONDS = 120.0  # how long replayed pages are awaited
MISSING_NAMED = 20  # batch uids named in a message; the report keeps them all


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
        unconfirmed: Sequence[str] = (),
    ) -> None:
        self.run_uid = run_uid
        self.missing = list(missing)
        self.ambiguous = list(ambiguous)
        self.unconfirmed = list(unconfirmed)
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
        if self.unconfirmed:
            problems.append(
                f"Of those, {len(self.unconfirmed)} batches ({_named(self.unconfirmed)}) have a page stored "
                "that no successful delivery of the API confirms, even after replays: not read (anyone "
                "holding the callback URL could have posted it)."
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
                f"{len(self.ambiguous)} batch uids ({_named(self.ambiguous)}): pages that differ were "
                "posted under one batch uid (a forged page, or a page changed on redelivery), so those "
                "batches are not read."
            )
        if unverified:
            problems.append(
                f"Run {run_uid}: {unverified} stored pages have no delivery record, and the records may "
                "be incomplete (the hook does not page through them): those pages are not read."
            )
        super().__init__(" ".join(problems))


def _named(uids: Sequence[str]) -> str:
    return ", ".join(uids[:MISSING_NAMED]) + (" ..." if len(uids) > MISSING_NAMED else "")


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
    unconfirmed: list[str] = field(default_factory=list)  # stored, but no delivery the API confirms
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
            unconfirmed=self.unconfirmed,
        )
        if on_missing == "fail":
            raise error
        log.warning("%s", error)


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
    pages = RunPages(
        hook, store, launch_key=launch_key, run_uid=run_uid, log=log, relist_every=max(5.0, 5 * poll_seconds)
    )
    missing = pages.short_batches()
    if missing:
        log.info(
            "Run %s: %s of %s batches short of pages; replaying them (up to %s times each)",
            run_uid,
            len(missing),
            len(pages.by_batch),
            MAX_REPLAYS,
        )
    pages.in_flight = {batch for batch in missing if pages.delivering(batch)}
    while missing:
        # Each round replays what is missing and not being delivered, then waits one poll.
        hope = pages.replay(missing)
        missing = pages.short_batches()
        if not missing or not hope or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))
        missing = pages.follow_deliveries(pages.short_batches())
    return _report(
        hook,
        store,
        pages.by_batch,
        run_uid=run_uid,
        launch_key=launch_key,
        storage=storage,
        replayed=pages.replays.made,
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
    expected = {batch: pages_in(recs) for batch, recs in by_batch.items()}
    count = {batch: len(stored.get(batch, [])) for batch in expected}
    # More pages stored than the records list: pages under one batch uid that differ, so some
    # were not delivered by the API (a forger's, or a page changed on a retry): none is read
    # and the batch is named. Fewer, or none confirmed delivered: missing, not read either.
    ambiguous = sorted(b for b, n in expected.items() if count[b] > n)
    unconfirmed = sorted(b for b in expected if 0 < count[b] <= expected[b] and not confirmed(by_batch[b]))
    missing = sorted(b for b, n in expected.items() if count[b] < n or b in unconfirmed)
    readable = [b for b in sorted(expected) if b not in ambiguous and b not in unconfirmed]
    page_ids = [page for batch in readable for page in stored.get(batch, [])]
    received = sum(min(count[b], n) for b, n in expected.items() if b not in unconfirmed)
    unlisted = sum(len(pages) for batch, pages in stored.items() if batch not in expected)
    report = ReconcileReport(
        run_uid=run_uid,
        launch_key=launch_key,
        storage=storage,
        expected=sum(expected.values()),
        received=received,
        replayed=replayed,
        missing=missing,
        unlisted=unlisted,
        ambiguous=ambiguous,
        unconfirmed=unconfirmed,
        page_ids=page_ids,
        refused=sum(
            1
            for b, n in expected.items()
            if count[b] < n and max(by_batch[b], key=lambda r: r.created_at).http_status == 403
        ),
        records_complete=takes_paging(hook.list_run_callbacks)
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
