"""The receiver mounted in a real Airflow 3 API server by the provider's plugin."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from airflow_provider_captaindata.callbacks.storage import page_digest
from airflow_provider_captaindata.callbacks.tokens import callback_url_for
from tests.airflow_helpers import AIRFLOW_3
from tests.callbacks.conftest import SECRET, callback_body

BIN = Path(sys.executable).parent
CONN_ID = "captaindata_callbacks_test"

# A connection in the metadata database, as a deployment would have it (UI or CLI).
SETUP = """
import json, sys
import airflow
before = set(sys.modules)  # Airflow 3.0 itself already imports FastAPI: only ours counts
import airflow_provider_captaindata.callbacks.plugin as plugin
# Loading the plugin (every Airflow process does) builds nothing and imports no web framework.
added = set(sys.modules) - before
assert "fastapi" not in added and "starlette" not in added, "plugin import is not light"
from airflow.utils import db
from airflow.models import Connection
from airflow.utils.session import create_session
db.initdb()
with create_session() as session:
    extra = json.dumps({"callback_secret": sys.argv[2], "callback_storage": sys.argv[3]})
    session.add(Connection(conn_id=sys.argv[1], conn_type="captaindata", password="k", extra=extra))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(AIRFLOW_3, reason="on Airflow 3 the API server test below covers it")
def test_plugin_is_harmless_on_airflow_2() -> None:
    code = (
        "import json, sys; import airflow_provider_captaindata.callbacks.plugin as p; "
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules; "
        "print(json.dumps(p.CaptainDataCallbacksPlugin().fastapi_apps)); "
        "assert 'fastapi' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.airflow3
def test_callback_stored_through_the_airflow_api_server(tmp_path: Path) -> None:
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    storage = tmp_path / "pages"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CAPTAINDATA__CALLBACK_CONN_ID=CONN_ID,
    )
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", SETUP, CONN_ID, SECRET, storage.as_uri()],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"\nsetup {time.monotonic() - started:.1f} s")
    port = free_port()
    log_path = tmp_path / "api-server.log"
    with open(log_path, "wb") as log_file:
        # One worker, core app only (plugins' apps are mounted on it): the quickest to start.
        server = subprocess.Popen(
            [
                str(BIN / "airflow"),
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "-w",
                "1",
                "--apps",
                "core",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped below, with its worker
        )
    base_url = f"http://127.0.0.1:{port}/captaindata"
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 150  # ~15 s on a quiet machine; generous for busy CI
            while True:
                assert server.poll() is None, log_path.read_text()[-3000:]
                try:
                    if client.get(f"{base_url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API server did not answer"
                time.sleep(0.5)

            print(f"API server answering after {time.monotonic() - started:.1f} s")
            key = uuid.uuid4().hex[:24]
            body = callback_body(rows=3, custom_data={"crm_id": 1})
            forged = client.post(
                callback_url_for(base_url, "not-the-secret-of-this-server", key), content=json.dumps(body)
            )
            assert forged.status_code == 403
            assert not storage.exists()
            answer = client.post(callback_url_for(base_url, SECRET, key), content=json.dumps(body))
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"stored": body["run"]["batch_uid"]}
            name = f"{body['run']['batch_uid']}.{page_digest(body)}.json"
            page = storage / key / body["run"]["run_uid"] / name
            assert json.loads(page.read_text()) == body
            # v3 webhooks go through the same mount (see test_webhooks.py for the whole chain).
            from airflow_provider_captaindata.callbacks.webhooks import webhook_url_for

            webhook = {"job_uid": str(uuid.uuid4()), "message": "Run 'x' succeeded", "error": None}
            hook_url = webhook_url_for(base_url, SECRET)
            assert client.post(hook_url, json=webhook).status_code == 200
            (stored,) = (storage / "webhooks" / "v3" / "default").iterdir()
            assert json.loads(stored.read_text()) == webhook
            # Every other method is refused by the router, and still logged without the token.
            for method in ("GET", "HEAD", "PUT", "OPTIONS", "DELETE", "PATCH"):
                for url in (callback_url_for(base_url, SECRET, key), hook_url, hook_url + "/x"):
                    assert client.request(method, url).status_code in (401, 404, 405), (method, url)
            # The rest of the API server still needs its own auth; ours did not open it up.
            assert client.get(f"http://127.0.0.1:{port}/api/v2/connections").status_code in (401, 403)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    token = callback_url_for(base_url, SECRET, key).rsplit("/", 1)[1]
    server_log = log_path.read_text()
    assert f"/captaindata/v1/{key}/REDACTED" in server_log  # the API server's access log
    # Read once the server has stopped: it writes an access line after sending the answer.
    assert "/webhooks/v3/default/REDACTED" in server_log
    assert hook_url.rsplit("/", 1)[1] not in server_log
    assert token[:20] not in server_log
    access = [line for line in server_log.splitlines() if "/captaindata/" in line]
    assert any("GET" in line and f"/captaindata/v1/{key}/REDACTED" in line for line in access), access
