"""Finding runs by time in the API's run listings, with the one margin for Captain Data's clock,
and the launch that looks its run up after an ambiguous failure rather than launch twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_captaindata.client.paging import PageTrail
from airflow_provider_captaindata.exceptions import (
    CaptainDataAPIError,
    CaptainDataError,
    CaptainDataTransportError,
    may_have_acted,
)

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.policy import RetryPolicy
    from airflow_provider_captaindata.client.versions import ApiVersion

# Captain Data's clock may be behind (or ahead of) Airflow's by up to this much: every
# comparison of a Captain Data time with an Airflow time reads this much further back
# (lookup_since, may_be_since, the hooks' launch lookups).
LOOKUP_CLOCK_MARGIN = 600.0

# The launch messages keep the logger of the client that logged them before launch_once moved
# here: logging set up for that name still reaches them.
log = logging.getLogger("airflow_provider_captaindata.client.api")


def may_be_since(created: float | None, since: float | None) -> bool:
    """Whether a run Captain Data says was created at ``created`` (epoch seconds, its clock) may
    have been created after ``since`` (from :func:`lookup_since`, the margin already taken).
    An unknown time may be anything: it counts."""
    return created is None or since is None or created >= since


def runs_since(
    pages: Iterable[list[Any]], since: float | None, version: ApiVersion, what: str
) -> Iterator[Any]:
    """The runs of ``pages`` (newest first), read until a whole page was created before
    ``since`` (None: to the end). Bounded by time, not by a number of pages, so a burst of
    sibling runs never pushes a run out of sight; a page that repeats an earlier one (the
    API ignoring the page asked for, or cycling) fails rather than looping (``PageTrail``).

    "Newest" is by Captain Data's clocks, which may disagree by the margin: a lookup of one
    launch's run therefore passes over the runs it knows are not the one (``exclude``) instead
    of stopping at the first match, which may be an earlier failed run dated later."""
    trail = PageTrail(what)
    for runs in pages:
        if not runs:
            return
        trail.page(",".join(str(run.uid) for run in runs), len(runs))
        yield from runs
        created = [version.created_at(run.model_dump()) for run in runs]
        if since is not None and not any(may_be_since(t, since) for t in created):
            return


class LaunchedRun(Protocol):
    """What a launch lookup finds: a run of either API generation, known by its uid."""

    @property
    def uid(self) -> str: ...


def launch_once(
    what: str,
    launch: Callable[[], str],
    find: Callable[[float, Sequence[str]], LaunchedRun | None],
    stale_run_uids: Sequence[str],
    policy: RetryPolicy,
) -> str:
    """Call ``launch`` (it returns the run's uid) until it answers; after each ambiguous failure
    ask ``find(since, stale_run_uids)`` for the run it may have created anyway (the newest
    match among runs created since ``since``, passing over ``stale_run_uids``, or None), and
    return that run's uid instead of launching again.

    ``stale_run_uids``: earlier runs that match too (a failed try), never taken for this launch."""
    since = time.time() - LOOKUP_CLOCK_MARGIN  # a run this call creates is newer

    def launched() -> str | None:
        run = find(since, stale_run_uids)
        return run.uid if run is not None else None

    last_error: CaptainDataError | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            return launch()
        except (CaptainDataAPIError, CaptainDataTransportError) as exc:
            if not may_have_acted(exc):
                raise
            last_error = exc
        # The API may still be creating the run: give it time to be listed first.
        time.sleep(max(policy.backoff_seconds(attempt), policy.launch_lookup_delay))
        log.warning("Launch of %s ended ambiguously (%s); looking it up", what, last_error)
        existing = launched()
        if existing is not None:
            log.info("Run %s of %s exists: not launching again", existing, what)
            return existing
        log.info("No run of %s: launching again (attempt %s)", what, attempt + 1)
    assert last_error is not None
    raise last_error
