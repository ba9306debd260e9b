"""The CLI starts and stops cleanly; the pytest fixture works from another package; the
emulator never imports Airflow; the in-process server starts, stops and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from airflow_provider_captaindata.emulator import CaptainDataEmulator, EmulatorClient

CLEAN_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "CAPTAINDATA_EMULATOR"))
}


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            *args,
            "--port",
            "0",
            "--seed",
            "7",
            "--rate-limit",
            "3",
            "--set",
            "v3_page_size=10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
    )
    assert proc.stdout is not None
    first_line = proc.stdout.readline().strip()
    return proc, first_line


@pytest.mark.parametrize(
    ("entry", "signum"),
    [
        (("-m", "airflow_provider_captaindata.emulator"), signal.SIGTERM),
        (
            (
                "-c",
                "import sys; from airflow_provider_captaindata.emulator.cli import main; sys.exit(main())",
            ),
            signal.SIGINT,
        ),
    ],
    ids=["python-m-SIGTERM", "console-script-main-SIGINT"],
)
def test_cli_prints_its_url_first_and_stops_on_a_signal(entry: tuple[str, str], signum: int) -> None:
    proc, url = _start_cli(*entry)
    try:
        assert url.startswith("http://127.0.0.1:"), url
        client = EmulatorClient(url)
        assert client.info()["seed"] == 7
        assert client.config()["rate_limit_per_second"] == 3 and client.config()["v3_page_size"] == 10
        answer = httpx.get(f"{url}/v4/workspaces", headers={"X-API-Key": client.api_key}, timeout=5)
        assert answer.status_code == 200
        client.close()
        proc.send_signal(signum)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout is not None and "AIRFLOW_CONN_CAPTAINDATA_DEFAULT" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_bad_setting() -> None:
    args = ["-m", "airflow_provider_captaindata.emulator", "--port", "0", "--set", "nope=1"]
    result = subprocess.run(
        [sys.executable, *args], check=False, capture_output=True, text=True, timeout=30, env=CLEAN_ENV
    )
    assert result.returncode == 1 and "nope" in result.stderr


def test_fixture_works_from_a_test_in_another_package(tmp_path: Path) -> None:
    # A separate project: its own rootdir, no conftest of ours; the fixture comes from the
    # installed plugin's pytest11 entry point, as it does for our users.
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "test_user_dag.py").write_text(
        textwrap.dedent(
            """
            import json
            import os

            import httpx


            def test_first(captaindata_emulator):
                conn = json.loads(os.environ["AIRFLOW_CONN_CAPTAINDATA_DEFAULT"])
                assert conn["host"] == captaindata_emulator.base_url
                assert conn["extra"]["project_uid"] == captaindata_emulator.project_uid
                captaindata_emulator.add_fault("GET", "/v4/workspaces", status=503, times=None)
                answer = httpx.get(conn["host"] + "/v4/workspaces", headers={"X-API-Key": conn["password"]})
                assert answer.status_code == 503


            def test_second_is_reset(captaindata_emulator):
                headers = {"X-API-Key": captaindata_emulator.api_key}
                answer = httpx.get(captaindata_emulator.v4_url + "/workspaces", headers=headers)
                assert answer.status_code == 200
                assert len(captaindata_emulator.requests()) == 1
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=CLEAN_ENV,
    )
    assert "2 passed" in result.stdout, result.stdout + result.stderr


def test_the_emulator_never_imports_airflow() -> None:
    code = textwrap.dedent(
        """
        import sys
        import httpx
        from airflow_provider_captaindata.emulator import CaptainDataEmulator
        import airflow_provider_captaindata.emulator.pytest_plugin
        with CaptainDataEmulator() as emu:
            headers = {"X-API-Key": emu.api_key}
            body = {"input": {"linkedin_profile_url": "https://www.linkedin.com/in/a"}}
            url = emu.v4_url + "/actions/linkedin-extract-people/run/live"
            assert httpx.post(url, json=body, headers=headers).status_code == 200
        leaked = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, env=CLEAN_ENV
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_in_process_start_stop_restart() -> None:
    emulator = CaptainDataEmulator(seed=3, api_key="other-key", settings={"v4_search_total_results": 12})
    with pytest.raises(Exception, match="not started"):
        _ = emulator.base_url
    with emulator:
        first_url = emulator.base_url
        assert emulator.running and emulator.config()["v4_search_total_results"] == 12
        assert httpx.get(f"{first_url}/v4/workspaces", headers={"X-API-Key": "other-key"}).status_code == 200
    assert not emulator.running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{first_url}/v4/workspaces", timeout=2)
    emulator.stop()  # twice is fine
    with emulator:
        assert emulator.base_url == first_url and emulator.info()["seed"] == 3


def test_two_emulators_side_by_side_differ_by_seed() -> None:
    with CaptainDataEmulator(seed=1) as one, CaptainDataEmulator(seed=2) as two:
        assert one.base_url != two.base_url
        get = "/v3/workflows"
        headers = {"x-api-key": one.api_key, "x-project-id": one.project_uid}
        first = httpx.get(one.base_url + get, headers=headers).json()
        second = httpx.get(two.base_url + get, headers=headers).json()
        assert [w["name"] for w in first] == [w["name"] for w in second]
        assert first[0]["uid"] != second[0]["uid"]


def test_cli_serves_https_that_the_provider_trusts_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_captaindata.emulator.tls import make_local_tls
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook

    tls = make_local_tls(tmp_path)
    proc, url = _start_cli(
        "-m",
        "airflow_provider_captaindata.emulator",
        "--ssl-certfile",
        str(tls.cert_file),
        "--ssl-keyfile",
        str(tls.key_file),
    )
    try:
        assert url.startswith("https://127.0.0.1:"), url
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/_emulator/info", timeout=5)  # not trusted by default
        for name, value in tls.client_env().items():
            monkeypatch.setenv(name, value)
        client = EmulatorClient(url)
        monkeypatch.setenv("AIRFLOW_CONN_CAPTAINDATA_DEFAULT", json.dumps(client.connection_json()))
        workflows = CaptainDataHook().list_workflows()  # requests, over TLS
        assert workflows and client.requests(method="GET", path="/v3/workflows*")
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_cli_refuses_a_certificate_without_its_key() -> None:
    args = ["-m", "airflow_provider_captaindata.emulator", "--port", "0", "--ssl-certfile", "x.pem"]
    result = subprocess.run(
        [sys.executable, *args], check=False, capture_output=True, text=True, timeout=30, env=CLEAN_ENV
    )
    assert result.returncode == 2 and "--ssl-keyfile" in result.stderr
