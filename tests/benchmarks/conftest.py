"""Benchmark fixtures: the emulator in its own process, a private AIRFLOW_HOME for children,
and the recorder that prints the summary table and writes ``.bench/results.json``.

Run with ``make bench`` (``pytest tests/benchmarks -p no:randomly -s``). The parent
``tests/conftest.py`` has already pointed AIRFLOW_HOME at a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.harness import BENCH_DIR, STRICT, Recorder, format_row, machine_info

_RECORDER = Recorder()
_STARTED = time.time()
# Taken at import, before any benchmark loads the machine.
_MACHINE_AT_START: dict[str, Any] = machine_info()


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return _RECORDER


@pytest.fixture(scope="session")
def child_home() -> Iterator[Path]:
    """AIRFLOW_HOME of the children (each child reads only the environment, never a DB)."""
    home = Path(tempfile.mkdtemp(prefix="captaindata-bench-airflow-"))
    (home / "dags").mkdir()
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[str]:
    """The emulator CLI in its own process (its CPU must not count as the client's).

    Its stdout goes to a file, not a pipe: an undrained pipe would block the emulator once
    its access log filled the pipe buffer. The first line it prints is its base URL.
    """
    BENCH_DIR.mkdir(exist_ok=True)
    log_path = BENCH_DIR / "emulator.log"
    script = Path(sys.executable).with_name("captaindata-emulator")
    argv = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from airflow_provider_captaindata.emulator.cli import main; main()"]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    with _serve([*argv, "--port", "0", "--host", "127.0.0.1"], log_path, env, timeout=60.0) as base_url:
        yield base_url


@contextlib.contextmanager
def _serve(argv: list[str], log_path: Path, env: dict[str, str] | None, timeout: float) -> Iterator[str]:
    """Run a server process whose first line of output is its base URL; stop it on exit."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        yield _wait_for_first_line(log_path, proc, timeout=timeout)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class StatusServer:
    """The TLS status server's process (``status_server.py``): base URL, CA file, counters."""

    url: str
    ca_file: Path

    def _call(self, path: str, method: str = "GET") -> dict[str, Any]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return dict(json.loads(answer.read()))

    def stats(self) -> dict[str, Any]:
        return self._call("/_stats")

    def reset(self) -> None:
        self._call("/_reset", "POST")


@pytest.fixture(scope="session")
def status_server() -> Iterator[StatusServer]:
    """The fake run-status server over TLS, in its own process (its CPU is not the client's),
    with a throwaway CA that the children trust through SSL_CERT_FILE."""
    from airflow_provider_captaindata.emulator.tls import make_local_tls

    tls = make_local_tls(BENCH_DIR / "tls")
    ca, cert, key = tls.ca_file, tls.cert_file, tls.key_file
    script = Path(__file__).with_name("status_server.py")
    argv = [sys.executable, str(script), "--certfile", str(cert), "--keyfile", str(key)]
    with _serve(argv, BENCH_DIR / "status-server.log", None, timeout=30.0) as url:
        yield StatusServer(url, ca)


def _wait_for_first_line(path: Path, proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        for line in text.splitlines():
            if line.startswith("http"):
                return line.strip()
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"the emulator printed no base URL within {timeout} s")


@pytest.fixture(scope="session")
def emulator(emulator_process: str) -> Any:
    """An EmulatorClient, with this process's default connection pointed at it."""
    from airflow_provider_captaindata.emulator import EmulatorClient

    client = EmulatorClient(emulator_process)
    os.environ["AIRFLOW_CONN_CAPTAINDATA_DEFAULT"] = json.dumps(client.connection_json())
    return client


def connection_env(emulator: Any, **extra: Any) -> dict[str, str]:
    """AIRFLOW_CONN_CAPTAINDATA_DEFAULT for a child, with extra fields (e.g. the rate limit)."""
    conn = emulator.connection_json()
    conn.setdefault("extra", {}).update(extra)
    return {"AIRFLOW_CONN_CAPTAINDATA_DEFAULT": json.dumps(conn)}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RECORDER.rows:
        return
    machine = {**_MACHINE_AT_START, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    path = _RECORDER.write(_STARTED, machine)
    write = terminalreporter.write_line
    write("")
    write("=" * 40 + " benchmarks " + "=" * 40)
    write(
        f"{machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"Airflow {machine['airflow']}, commit {machine['git_commit']}; load average "
        f"{machine['load_avg_1_5_15']} at start, {machine['load_avg_at_end']} at end"
    )
    for row in _RECORDER.rows:
        write(format_row(row))
    missed = [r for r in _RECORDER.rows if r.met is False]
    write(f"{len(missed)} target(s) missed" + ("" if STRICT else " (BENCH_STRICT=1 fails on a miss)"))
    write(f"figures written to {path}")
