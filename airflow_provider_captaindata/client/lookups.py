"""Finding runs by time in the API's run listings, with the one margin for Captain Data's clock."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_captaindata.client.paging import PageTrail

if TYPE_CHECKING:
    from airflow_provider_captaindata.client.versions import ApiVersion

# Captain Data's clock may be behind (or ahead of) Airflow's by up to this much: every
# comparison of a Captain Data time with an Airflow time reads this much further back
# (lookup_since, may_be_since, the hooks' launch lookups).
LOOKUP_CLOCK_MARGIN = 600.0


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
    API ignoring the page asked for, or cycling) fails rather than looping (``PageTrail``)."""
    trail = PageTrail(what)
    for runs in pages:
        if not runs:
            return
        trail.page(",".join(str(run.uid) for run in runs), len(runs))
        yield from runs
        created = [version.created_at(run.model_dump()) for run in runs]
        if since is not None and not any(may_be_since(t, since) for t in created):
            return
