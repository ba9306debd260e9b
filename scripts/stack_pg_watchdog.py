"""The parent of the stack's ``postgres``: passes SIGTERM and SIGINT on as SIGINT (fast shutdown).

``python scripts/stack_pg_watchdog.py [--user NAME] -- postgres -D ...``, started by
``scripts/stack_postgres.py``. The postmaster does not act on a parent-death signal (checked
with PostgreSQL 15), this process does: if the stack is killed outright, the kernel's SIGTERM
reaches the cluster through it. Standard library only: it stays small.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
from typing import Any


def become(user: str | None) -> Any:
    """What runs in the child before its program: become ``user`` (None: stay who we are)."""
    owner = pwd.getpwnam(user) if user else None

    def change() -> None:
        if owner is not None:
            os.setgroups([])
            os.setgid(owner.pw_gid)
            os.setuid(owner.pw_uid)

    return change


def watch(argv: list[str], user: str | None) -> int:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=become(user))  # noqa: PLW1509

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


def main(argv: list[str]) -> int:
    user = None
    if argv[:1] == ["--user"]:
        user, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: stack_pg_watchdog.py [--user NAME] -- postgres ...", file=sys.stderr)
        return 2
    return watch(argv, user)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
