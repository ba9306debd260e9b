"""docs/getting-started.md cannot rot: its commands and code between the ``docs-test`` markers
run as written (one bash script, in a fresh HOME), against the emulator the page starts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def page_script() -> str:
    text = PAGE.read_text()
    tested = text.split("<!-- docs-test: start -->", 1)[1].split("<!-- docs-test: end -->", 1)[0]
    parts = []
    for kind, body in BLOCK.findall(tested):
        if kind == "bash":
            parts.append(body)
        else:  # a python block names its file on its first line: written where the reader would
            path = body.splitlines()[0].removeprefix("# ").strip()
            parts.append(f"cat > {path} <<'PAGE_PYTHON'\n{body}PAGE_PYTHON\n")
    assert len(parts) >= 3, "the page lost its tested blocks"
    return "\n".join(parts)


@pytest.mark.services
@pytest.mark.timeout(900)  # airflow db migrate + dags test: 268 s to over 300 s on the loaded 2-core machine
def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CAPTAINDATA"))}
    env["HOME"] = str(tmp_path)
    # The installed console scripts (airflow, captaindata-emulator) first, as after `pip install`.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The emulator started in the background stops with the script.
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + page_script()
    started = time.monotonic()
    # Its own session: whatever the script started (the emulator, airflow) is stopped with it,
    # even when the test times out.
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=840)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    took = time.monotonic() - started
    log = tmp_path / "captaindata-first-dag" / "dags-test.log"
    details = result.stdout + result.stderr + (log.read_text()[-3000:] if log.exists() else "")
    assert result.returncode == 0, details
    assert "4 rows" in result.stdout, details
    assert re.search(r"DagRun Finished: dag_id=my_first_dag,.* state=success", result.stdout), details
    print(f"getting-started path (steps 2-4): {took:.0f} s")
