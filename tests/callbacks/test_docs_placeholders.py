"""Issue 22 #5 (from a review): ``callback_secret`` equal to a placeholder the docs show is refused.

docs/security.md: "callback_secret is refused when shorter than 16 characters, with fewer than 8
different ones, or equal to the docs' placeholder". The docs render
``dags_examples/captaindata_action_async.py`` whole (docs/howto/action-operator.md includes it),
whose connection example reads ``"callback_secret": "<a long random string>"``; ``tokens.
PLACEHOLDER_SECRETS`` lists ``a-long-random-string`` only, so that placeholder signs URLs. A
deployment that copied it has a public secret: anyone can mint a callback URL for any launch key
and a webhook URL for any name.

Real HTTP: a receiver reading its secret from an Airflow connection, as the plugin does.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from airflow_provider_captaindata.callbacks import tokens
from airflow_provider_captaindata.callbacks.app import create_app
from airflow_provider_captaindata.callbacks.webhooks import webhook_token
from tests.callbacks.conftest import LAUNCH_KEY, ServerThread, callback_body

ROOT = Path(__file__).resolve().parents[2]
# Where a deployer copies a connection from: the docs, the README and the examples they render.
SHOWN = [
    *ROOT.joinpath("docs").rglob("*.md"),
    ROOT / "README.md",
    *ROOT.joinpath("dags_examples").glob("*.py"),
]
PATTERNS = (
    re.compile(r"""["']callback_secret["']\s*:\s*["']([^"']+)["']"""),
    re.compile(r"""CALLBACK_SECRET=["']?([^"'\s]+)"""),
    # The secret argument of a URL-building call: webhook_url_for(base, SECRET, ...) (a review
    # found 'THE-CALLBACK-SECRET' in docs/howto/event-scheduling.md accepted).
    re.compile(r"""(?:webhook|callback)_url_for\(\s*['"][^'"]*['"]\s*,\s*['"]([^'"]+)['"]"""),
)


def placeholders() -> list[str]:
    found = {m.group(1) for path in SHOWN for p in PATTERNS for m in p.finditer(path.read_text())}
    # Values that reference a variable or a command are not literal secrets.
    return sorted(v for v in found if not v.startswith(("$", "{")) and "secrets." not in v)


def test_the_docs_show_placeholders() -> None:
    assert {"a-long-random-string", "<a long random string>", "THE-CALLBACK-SECRET"} <= set(placeholders())


@pytest.mark.parametrize("placeholder", placeholders())
def test_every_placeholder_the_docs_show_is_refused(placeholder: str) -> None:
    assert tokens.weak_secret(placeholder) is not None, f"{placeholder!r} (shown in the docs) signs URLs"


@pytest.mark.parametrize("placeholder", placeholders())
def test_a_receiver_configured_with_a_docs_placeholder_accepts_no_forged_url(
    placeholder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"callback_secret": placeholder, "callback_storage": (tmp_path / "pages").as_uri()}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CD_PLACEHOLDER",
        json.dumps({"conn_type": "captaindata", "password": "k", "extra": extra}),
    )
    server = ServerThread(create_app(conn_id="cd_placeholder"))
    try:
        # What anyone who read the docs can compute: no URL handed out by Airflow is needed.
        expires = int(time.time()) + 3600
        forged = (
            f"{server.base_url}/v1/{LAUNCH_KEY}/{expires}/{tokens._sign(placeholder, LAUNCH_KEY, expires)}"
        )
        hook = f"{server.base_url}/webhooks/v3/default/{webhook_token(placeholder, 'default')}"
        with httpx.Client(timeout=10) as client:
            page = client.post(forged, json=callback_body())
            webhook = client.post(hook, json={"job_uid": "r1", "message": "Run succeeded"})
    finally:
        server.stop()
    assert (page.status_code, webhook.status_code) == (503, 503), (
        f"a URL signed with the docs' placeholder {placeholder!r} was answered "
        f"{page.status_code} (callback) and {webhook.status_code} (webhook)"
    )
    assert not (tmp_path / "pages").exists()
