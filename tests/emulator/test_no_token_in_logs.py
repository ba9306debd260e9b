"""No callback token in the emulator's log lines (issue 22, from a review).

``emulator/v4_runs.py`` logged a failed delivery with the run's whole callback URL, token
included, into the process that hosts the emulator (the ``captaindata_emulator`` fixture runs it
in the test or Airflow process; ``captaindata-emulator`` logs to stderr). A receiver that is down
for a moment is enough. Real HTTP: the emulator sends to a port where nothing listens.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.callbacks.conftest import LAUNCH_KEY, SECRET


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failed_delivery_logs_no_callback_token(
    captaindata_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    captaindata_emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.2)
    url = callback_url_for(f"http://127.0.0.1:{closed_port()}", SECRET, LAUNCH_KEY)
    token = url.rsplit("/", 1)[1]
    hook = CaptainDataHook()
    with caplog.at_level(logging.DEBUG, logger="airflow_provider_captaindata"):
        run = hook.run_action_async(
            "linkedin-extract-people",
            [{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}],
            callback_url=url,
        )
        deadline = time.monotonic() + 30
        while hook.get_action_run(run.uid).status.upper() in ("QUEUED", "RUNNING"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    leaked = [f"{r.name}: {r.getMessage()}" for r in caplog.records if token in r.getMessage()]
    assert leaked == [], f"{len(leaked)} log line(s) carry the callback token, e.g. {leaked[0]}"
