"""``captaindata-callback-receiver`` as a real process: base URL first, callbacks stored, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks.reconcile import reconcile_run
from airflow_provider_captaindata.callbacks.storage import page_digest
from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.callbacks.conftest import SECRET, callback_body
from tests.callbacks.test_reconcile import assert_exactly_once, run_to_the_end

SCRIPT = str(Path(sys.executable).with_name("captaindata-callback-receiver"))


class Cli:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def first_line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


@pytest.fixture
def cli_receiver(tmp_path: Path) -> Iterator[tuple[Cli, str, Path]]:
    folder = tmp_path / "pages"
    cli = Cli("--port", "0", "--storage", folder.as_uri(), env={"CAPTAINDATA_CALLBACK_SECRET": SECRET})
    base_url = cli.first_line()
    assert base_url.startswith("http://127.0.0.1:"), cli.stop()
    try:
        yield cli, base_url, folder
    finally:
        cli.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_exits_cleanly(cli_receiver: tuple[Cli, str, Path], sig: int) -> None:
    cli, base_url, folder = cli_receiver
    key = uuid.uuid4().hex[:24]
    body = callback_body(rows=2)
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base_url}/health").status_code == 200
        answer = client.post(callback_url_for(base_url, SECRET, key), content=json.dumps(body))
        assert answer.status_code == 200
        forged = client.post(
            callback_url_for(base_url, "a-wrong-but-strong-secret-42", key), content=json.dumps(body)
        )
        assert forged.status_code == 403
    assert [p.name for p in folder.rglob("*.json")] == [
        f"{body['run']['batch_uid']}.{page_digest(body)}.json"
    ]
    code, err = cli.stop(sig)
    assert code == 0, err
    assert "Callback receiver stopped" in err
    token = callback_url_for(base_url, SECRET, key).rsplit("/", 1)[1]
    assert token[:20] not in err  # not even in the access log


def test_emulator_run_through_the_cli_receiver(
    captaindata_emulator: Any, cli_receiver: tuple[Cli, str, Path]
) -> None:
    captaindata_emulator.configure(
        v4_queued_seconds=0.05, v4_running_seconds=0.2, v4_results_per_input=2, callback_duplicate_rate=0.2
    )
    _, base_url, folder = cli_receiver
    key = uuid.uuid4().hex[:24]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 60, callback_url_for(base_url, SECRET, key))
    report = reconcile_run(hook, run_uid, key, folder.as_uri(), poll_seconds=0.1)
    assert (report.expected, report.received, report.missing) == (60, 60, [])
    assert_exactly_once([row for page in report.iter_pages() for row in page], 60)


def test_bad_arguments_exit_2_without_serving() -> None:
    # (A storage URI of an unknown scheme is refused the same way: see test_storage.)
    result = subprocess.run(
        [SCRIPT, "--port", "70000"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--port" in result.stderr
    assert result.stdout == ""  # no base URL printed: it never served
