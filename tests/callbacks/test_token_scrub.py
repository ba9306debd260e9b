"""Signed callback tokens stay out of task logs and trigger events however an answer encodes
the URL (issue 22; a review found ``client/scrub.py`` matched a token only after a literal
``/``): an API error naming the callback URL percent-encoded (a query parameter, a JSON field
quoted by a gateway) or with HTML entities (an HTML error page). Real HTTP: the emulator answers
the replays with the error, the receiver signs the URL.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_captaindata.callbacks.reconcile import MissingPagesError, reconcile_run
from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook
from tests.callbacks.conftest import Receiver
from tests.callbacks.test_reconcile import run_to_the_end


@pytest.fixture
def emulator(captaindata_emulator: Any) -> Any:
    captaindata_emulator.configure(v4_queued_seconds=0.05, v4_running_seconds=0.2, v4_results_per_input=2)
    return captaindata_emulator


ENCODINGS = {
    # as given: only a launch's own body was scrubbed, a replay's error was logged whole
    "as given": lambda url: url,
    # e.g. "callback https%3A%2F%2Fairflow.example%2Fv1%2F...%2F<token> cannot be replayed"
    "percent-encoded": lambda url: quote(url, safe=""),
    # e.g. "replay of /v4/runs/callbacks/x/replay?callback_url=https%3A%2F%2F...%2F<token>"
    "in a query string": lambda url: "/v4/runs/callbacks/x/replay?callback_url=" + quote(url, safe=":"),
    # an HTML error page's text: "https:&#x2F;&#x2F;airflow.example&#x2F;v1&#x2F;...&#x2F;<token>"
    "html entities": lambda url: url.replace("/", "&#x2F;"),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_an_encoded_callback_url_in_a_replay_error_keeps_its_token_out_of_the_task_log(
    emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    emulator.configure(callback_drop_rate=1.0)  # the pages never arrive: reconciling replays them
    key = uuid.uuid4().hex[:24]
    url = receiver.url(key)
    token = url.rsplit("/", 1)[1]
    hook = CaptainDataHook()
    run_uid = run_to_the_end(hook, 2, url)
    emulator.add_fault(
        "POST",
        "/v4/runs/callbacks/*/replay",
        times=None,
        status=409,
        error_label="CALLBACK_NOT_REPLAYABLE",
        message=f"callback to {ENCODINGS[encoding](url)} cannot be replayed now",
    )
    with caplog.at_level(logging.DEBUG):
        report = reconcile_run(hook, run_uid, key, receiver.storage, poll_seconds=0.05, replay_wait_seconds=2)
        with pytest.raises(MissingPagesError) as error:
            report.check("fail")
    assert report.missing  # the replays were asked, and refused
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "refused" in logged and "cannot be replayed" in logged  # the refusal reached the task log
    if encoding == "as given":
        assert f"/v1/{key}/" in logged  # the URL is logged, its token is not
    leaked = [line for line in logged.splitlines() if token in line]
    assert leaked == [], f"the token reached {len(leaked)} task log line(s), e.g. ...{leaked[0][-160:]}"
    assert token not in str(error.value)


def test_a_run_error_naming_the_callback_url_percent_encoded_keeps_its_token_out_of_the_trigger_event(
    emulator: Any, receiver: Receiver
) -> None:
    # The run's own last_error names where its pages go, as a query parameter would: the event
    # the triggerer hands back (stored in the metadata DB, then the task's exception text).
    import asyncio

    from airflow_provider_captaindata.triggers.runs import CaptainDataRunTrigger
    from tests.test_trigger import first_event

    url = receiver.url(uuid.uuid4().hex[:24])
    token = url.rsplit("/", 1)[1]
    emulator.force_outcome(
        "linkedin-extract-people",
        "FAILED",
        error_message=f"callback?url={quote(url, safe='')} answered 502 three times",
    )
    hook = CaptainDataHook()
    run = hook.run_action_async(
        "linkedin-extract-people",
        [{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}],
        callback_url=url,
    )
    trigger = CaptainDataRunTrigger(run_uid=run.uid, api_version="v4", poll_interval=0.2)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and "answered 502" in str(event.get("message"))
    assert token not in json.dumps(event), f"the trigger event carries the token: {event.get('message')}"
