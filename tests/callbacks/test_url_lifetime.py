"""How long a launch's callback URL is accepted: the task's whole wait, or ``callback_url_ttl``.

Checked with the receiver's own token check, and over HTTP against a real receiver.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from airflow_provider_captaindata.callbacks import tokens
from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.operators.actions import CaptainDataRunActionOperator
from tests.callbacks.conftest import SECRET, Receiver, callback_body

DAY = 86400.0


@pytest.fixture
def receiver_conn(captaindata_emulator: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    conn = captaindata_emulator.connection_json()
    conn["extra"].update(
        callback_base_url=receiver.base_url, callback_secret=SECRET, callback_storage=receiver.storage
    )
    monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(conn))
    return receiver


def operator(**kwargs: Any) -> CaptainDataRunActionOperator:
    return CaptainDataRunActionOperator(
        task_id="action",
        action="linkedin-extract-people",
        mode="async",
        inputs=[{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}],
        **kwargs,
    )


def url_of(op: CaptainDataRunActionOperator) -> tuple[str, str, str, str]:
    context = {"ti": SimpleNamespace(dag_id="d", task_id=op.task_id, map_index=-1), "run_id": "r"}
    url = op.callback_url_for_launch(context)
    key, expires, token = url.rsplit("/", 3)[1:]
    return url, key, expires, token


def accepted_after(op: CaptainDataRunActionOperator, seconds: float) -> str:
    """The receiver's verdict on this launch's URL ``seconds`` after it was made."""
    _, key, expires, token = url_of(op)
    return tokens.check(SECRET, key, expires, token, now=time.time() + seconds)


@pytest.mark.usefixtures("receiver_conn")
def test_a_retry_a_week_later_is_still_accepted() -> None:
    # 3 days per try, 2 retries a day apart: the last try may reconcile ~11 days after launch.
    op = operator(timeout=timedelta(days=3), retries=2, retry_delay=timedelta(days=1))
    assert accepted_after(op, 8 * DAY) == "ok"  # the old fixed 7 days: "expired"
    assert accepted_after(op, 11 * DAY) == "ok"
    assert accepted_after(op, 14 * DAY) == "expired"  # the budget plus 2 days' margin, no more


@pytest.mark.usefixtures("receiver_conn")
def test_the_shorter_limit_and_backoff_count() -> None:
    op = operator(timeout=timedelta(days=20), execution_timeout=timedelta(days=10))
    assert accepted_after(op, 11 * DAY) == "ok" and accepted_after(op, 13 * DAY) == "expired"
    backoff = operator(
        timeout=timedelta(days=6), retries=1, retry_delay=timedelta(hours=1), retry_exponential_backoff=True
    )
    assert accepted_after(backoff, 13.5 * DAY) == "ok"  # 2 tries + up to a day's backoff delay
    short = operator(timeout=60)
    assert accepted_after(short, 6.9 * DAY) == "ok" and accepted_after(short, 7.1 * DAY) == "expired"


@pytest.mark.usefixtures("receiver_conn")
def test_no_time_limit_gets_the_long_default_and_ttl_overrides() -> None:
    assert accepted_after(operator(), 89 * DAY) == "ok"
    assert accepted_after(operator(), 91 * DAY) == "expired"
    long = operator(timeout=60, callback_url_ttl=timedelta(days=200))
    assert accepted_after(long, 199 * DAY) == "ok" and accepted_after(long, 201 * DAY) == "expired"


def test_a_bad_ttl_is_refused_naming_it() -> None:
    for bad in (0, -5, "7d", True):
        with pytest.raises(CaptainDataConfigError, match="callback_url_ttl"):
            operator(callback_url_ttl=bad)


def test_over_http_a_short_ttl_expires_and_a_long_one_does_not(receiver_conn: Receiver) -> None:
    short_url = url_of(operator(callback_url_ttl=1))[0]
    default_url = url_of(operator(timeout=60))[0]
    time.sleep(1.2)
    with httpx.Client(timeout=10) as client:
        refused = client.post(short_url, content=json.dumps(callback_body()))
        stored = client.post(default_url, content=json.dumps(callback_body()))
    assert (refused.status_code, refused.json()) == (403, {"error": "expired token"})
    assert stored.status_code == 200
    assert len(receiver_conn.stored_files()) == 1


def test_pages_refused_as_expired_are_named_as_such(captaindata_emulator: Any, receiver: Receiver) -> None:
    # A run whose URL expired before its pages came: every delivery and replay gets 403, and
    # the error says why rather than only "unreachable".
    from airflow_provider_captaindata.callbacks.reconcile import MissingPagesError, reconcile_run
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
    from tests.callbacks.test_reconcile import run_to_the_end

    captaindata_emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.2)
    key = "ab" * 12
    expired = receiver.url(key, ttl_seconds=1, now=time.time() - 60)
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 3, expired)
    report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=5)
    assert (report.expected, report.received, report.replayed, report.refused) == (3, 0, 9, 3)
    assert receiver.stored_files() == []
    with pytest.raises(MissingPagesError, match="refused 3 of those batches with 403: the callback URL had"):
        report.check("fail")
