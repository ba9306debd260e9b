"""What a benchmark child measures of itself: resident memory and its peak (Linux ``/proc``),
event-loop lag, and an optional cProfile of the measured phase (``child.py``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """VmHWM, the peak RSS of this process image. Not ru_maxrss: Linux keeps that across
    execve, so a child would report its parent's (pytest's) size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux 4.0+: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class Profile:
    """cProfile of the measured phase when BENCH_PROFILE_DIR is set (``.pstats`` per case)."""

    def __init__(self, name: str) -> None:
        directory = os.environ.get("BENCH_PROFILE_DIR")
        self.path = Path(directory) / f"{name}.pstats" if directory else None
        self._profile: Any = None

    def __enter__(self) -> Profile:
        if self.path is not None:
            import cProfile

            # CPU time, not wall time: waiting in epoll is not a cost, and coroutines resumed
            # many times would otherwise carry their waits in their cumulative time.
            self._profile = cProfile.Profile(time.process_time)
            self._profile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._profile is not None and self.path is not None:
            self._profile.disable()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._profile.dump_stats(str(self.path))


class Ticker:
    """Event-loop lag: how late a coroutine that sleeps ``interval`` over and over wakes up.

    It also samples RSS ten times a second: the peak of the measured phase when the kernel's
    high-water mark cannot be reset.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self.peak_rss = 0
        self._stop = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ticks = 0
        while not self._stop:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(loop.time() - due)
            ticks += 1
            if ticks % 10 == 0:
                self.peak_rss = max(self.peak_rss, rss_bytes())

    def stop(self) -> None:
        self._stop = True
