"""The two emulator features the harness stands on: ``api_status`` (what the API did, under a
fault too) and ``clock_skew_seconds`` (Captain Data's clock off by minutes)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

MESSAGE = "linkedin-message-profile"
BODY = {"input": {"linkedin_profile_url": "https://www.linkedin.com/in/person-00000"}}


def post_message(emulator: Any) -> httpx.Response | None:
    try:
        return httpx.post(
            f"{emulator.v4_url}/actions/{MESSAGE}/run/live",
            json=BODY,
            headers={"X-API-Key": emulator.api_key},
        )
    except httpx.HTTPError:
        return None


def test_api_status_says_what_the_api_did_under_a_fault(captaindata_emulator: Any) -> None:
    captaindata_emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", status=503)
    captaindata_emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", status=524, after=True)
    captaindata_emulator.add_fault("POST", f"/v4/actions/{MESSAGE}/run/live", drop=True, after=True)
    answers = [post_message(captaindata_emulator) for _ in range(4)]
    assert [a.status_code if a else None for a in answers] == [503, 524, None, 200]
    log = captaindata_emulator.requests("POST", f"/v4/actions/{MESSAGE}/run/live")
    # Refused before acting: no api_status; acted under a fault: the API's own 200.
    assert [r.get("api_status") for r in log] == [None, 200, 200, 200]


@pytest.mark.parametrize("skew", [-600.0, 600.0])
def test_clock_skew_shifts_every_date_the_api_writes(captaindata_emulator: Any, skew: float) -> None:
    captaindata_emulator.configure(clock_skew_seconds=skew)
    answer = httpx.post(
        f"{captaindata_emulator.v4_url}/actions/linkedin-extract-people/run/async",
        json={"inputs": [BODY["input"]], "callback": {"url": "http://127.0.0.1:9/x", "headers": {}}},
        headers={"X-API-Key": captaindata_emulator.api_key},
    )
    created = datetime.fromisoformat(answer.json()["created_at"].replace("Z", "+00:00")).timestamp()
    assert abs(created - (time.time() + skew)) < 5
    with pytest.raises(Exception, match="clock_skew_seconds"):
        captaindata_emulator.configure(clock_skew_seconds=601)


def test_runs_named_by_the_undated_glob_are_listed_without_a_finish_time(captaindata_emulator: Any) -> None:
    from tests.test_event_trigger import Api

    captaindata_emulator.configure(
        v3_pending_seconds=0.0, v3_running_seconds=0.0, v3_list_undated_names="* undated"
    )
    api = Api(captaindata_emulator)
    workflow = httpx.get(f"{captaindata_emulator.v3_url}/workflows", headers=api.v3).json()[0]["uid"]
    undated, dated = api.start_v3(workflow, "run undated"), api.start_v3(workflow, "run dated")
    api.wait_final("v3", undated, dated)
    listed = httpx.get(f"{captaindata_emulator.v3_url}/workflows/{workflow}/jobs", headers=api.v3).json()
    finish = {job["uid"]: job["finish_time"] for job in listed}
    assert finish[undated] is None and finish[dated] is not None
    # The run's own read keeps its finish time: only the list leaves it out.
    own = httpx.get(f"{captaindata_emulator.v3_url}/jobs/{undated}", headers=api.v3).json()
    assert own["finish_time"] is not None
