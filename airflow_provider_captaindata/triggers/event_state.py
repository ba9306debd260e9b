"""What ``CaptainDataRunFinishedTrigger`` remembers between looks (and, on Airflow 3.3+, across
triggerers): the runs fired, the runs known not to be final yet, and the webhooks read.

Every mark is keyed by run *and* final status (``{uid}|{status}``): a run seen ``BLOCKED`` and
later resumed to ``SUCCEEDED`` is a new finish, and a run a ``states`` filter skipped marks only
the status that was skipped. Two states merge (union of marks, highest floor, the marks below
it forgotten), so two triggerers holding the same trigger during a handover add to one
watermark instead of overwriting each other's, and the stored state stays within the marks of
one overlap. Nothing below the floor fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Runs (or stored webhooks) that become visible late, out of finish order, are still caught
# if they finished within this long before the newest one fired; older marks are forgotten.
OVERLAP_SECONDS = 3600.0
# Marks of runs listed without a finish time cannot be forgotten by time (they have none):
# the newest this many are kept.
UNDATED_KEEP = 10_000


def fire_key(uid: str, status: str) -> str:
    return f"{uid}|{status}"


def _floats(data: Any) -> dict[str, float]:
    if not isinstance(data, dict):
        return {}
    numbers = {k: v for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {str(k): float(v) for k, v in numbers.items()}


@dataclass
class Watermark:
    """What has been marked: keys at or after ``floor`` (with their time); older ones never fire."""

    floor: float = -math.inf
    seen: dict[str, float] = field(default_factory=dict)

    def is_new(self, key: str, at: float) -> bool:
        # A mark stored before marks carried the status (a bare uid) still covers the run.
        return key not in self.seen and key.partition("|")[0] not in self.seen and at >= self.floor

    def add(self, key: str, at: float) -> None:
        self.seen[key] = at

    def advance(self) -> None:
        """Raise the floor to the newest time minus the overlap and forget what is below it."""
        if self.seen:
            self.floor = max(self.floor, max(self.seen.values()) - OVERLAP_SECONDS)
        self.seen = {k: t for k, t in self.seen.items() if t >= self.floor}

    def merge(self, other: Watermark) -> None:
        self.floor = max(self.floor, other.floor)
        for key, at in other.seen.items():
            self.seen[key] = max(at, self.seen.get(key, at))
        # What either holder forgot below the floor stays forgotten (nothing there fires, see
        # ``WatchState.is_new``): else each save brought every stored mark back, and the
        # stored state grew by a mark per finished run, forever.
        self.seen = {k: t for k, t in self.seen.items() if t >= self.floor}

    def to_json(self) -> dict[str, Any]:
        return {"floor": None if self.floor == -math.inf else self.floor, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, data: Any) -> Watermark:
        if not isinstance(data, dict):
            return cls()
        floor = data.get("floor")
        return cls(
            floor=float(floor) if isinstance(floor, int | float) else -math.inf,
            seen=_floats(data.get("seen")),
        )


@dataclass
class WatchState:
    """The trigger's persisted state.

    ``runs``: runs marked (fired, or skipped by ``states``), by finish time. ``undated``: runs
    marked that were listed without a finish time, by the time first seen (never forgotten by
    the floor, which would let them fire again). ``pending``: uids of runs seen not final yet
    (poll) or named by a webhook (webhook mode), with the time first seen: each is read on
    every look until it is final, wherever it sits in the run list. ``webhooks``: the stored
    webhooks read.
    """

    runs: Watermark = field(default_factory=Watermark)
    webhooks: Watermark = field(default_factory=Watermark)
    pending: dict[str, float] = field(default_factory=dict)
    undated: dict[str, float] = field(default_factory=dict)

    def is_marked(self, key: str) -> bool:
        return key in self.undated or not self.runs.is_new(key, math.inf)

    def is_new(self, key: str, at: float | None) -> bool:
        """Whether a final run (finished at ``at``; None: listed without a finish time) may fire.

        Never below the floor, pending or not: marks there are forgotten, so another holder
        may have fired the run and forgotten it (its floor passed it) while this one still had
        it pending; one firing it again broke "exactly once" with two triggerers."""
        return not self.is_marked(key) and (at is None or at >= self.runs.floor)

    def mark(self, key: str, at: float, dated: bool) -> None:
        if dated:
            if at < self.runs.floor:
                # Taken as fired below the floor (see ``is_new``). Marked at its own time, the
                # next merge would forget it at once and a copy still holding the run pending
                # would put it back there, for good; marked as the newest, it lasts an overlap:
                # every holder's save drops the run from pending meanwhile.
                at = max(self.runs.seen.values(), default=self.runs.floor)
            self.runs.add(key, at)
        else:
            self.undated[key] = at
            if len(self.undated) > UNDATED_KEEP:
                newest = sorted(self.undated.items(), key=lambda item: item[1])[-UNDATED_KEEP:]
                self.undated = dict(newest)

    def merge(self, other: WatchState) -> None:
        """Add what another holder of the same trigger stored (a triggerer handover)."""
        self.runs.merge(other.runs)
        self.webhooks.merge(other.webhooks)
        for name in ("pending", "undated"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for key, at in theirs.items():
                mine[key] = min(at, mine.get(key, at))
        # A run leaves pending once marked: the stored copy must not put it back, or every run
        # ever pending would be read by uid on every look (for a week).
        marked = {key.partition("|")[0] for key in [*self.runs.seen, *self.undated]}
        self.pending = {uid: at for uid, at in self.pending.items() if uid not in marked}

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs.to_json(),
            "webhooks": self.webhooks.to_json(),
            "pending": dict(self.pending),
            "undated": dict(self.undated),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatchState:
        return cls(
            runs=Watermark.from_json(data.get("runs")),
            webhooks=Watermark.from_json(data.get("webhooks")),
            pending=_floats(data.get("pending")),
            undated=_floats(data.get("undated")),
        )
