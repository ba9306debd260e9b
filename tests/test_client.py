"""The Captain Data client without Airflow, and the hooks as its adapters."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from airflow_provider_captaindata.client import CaptainDataAsyncClient, CaptainDataClient
from airflow_provider_captaindata.client.transport import RetryPolicy
from airflow_provider_captaindata.exceptions import CaptainDataAPIError, CaptainDataConfigError
from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook, CaptainDataHook

FAST = RetryPolicy(attempts=2, backoff_initial=0.01, backoff_max=0.05, read_timeout=10.0)
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}


def test_a_plain_script_calls_both_apis_without_importing_airflow(captaindata_emulator: Any) -> None:
    emu = captaindata_emulator
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from airflow_provider_captaindata.client import CaptainDataAsyncClient, CaptainDataClient

        client = CaptainDataClient(api_key={emu.api_key!r}, project_uid={emu.project_uid!r},
                                   base_url={emu.base_url!r})
        assert client.get_workspace()["name"] and client.get_workspaces()
        uid = client.list_workflows()[0].uid
        runs = asyncio.run(CaptainDataAsyncClient(api_key={emu.api_key!r}, project_uid={emu.project_uid!r},
                                                  base_url={emu.base_url!r}).list_workflow_runs(uid))
        assert isinstance(runs, list)
        leaked = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, env=CLEAN_ENV
    )
    assert result.stdout.strip() == "ok", result.stderr
    assert len(emu.requests(method="GET", path="/v4/workspaces")) == 1


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({}, "api_key"),
        ({"api_key": "  "}, "api_key"),
        ({"api_key": "k", "v4_base_url": "ftp://example.com"}, "v4_base_url"),
        ({"api_key": "k", "rate_limit_per_second": 0}, "rate_limit_per_second"),
    ],
)
def test_bad_values_fail_naming_the_parameter(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(CaptainDataConfigError, match=parameter):
        CaptainDataClient(**kwargs)
    with pytest.raises(CaptainDataConfigError, match=parameter):
        CaptainDataAsyncClient(**kwargs)


def test_settings_and_values_are_not_mixed() -> None:
    settings = CaptainDataClient(api_key="k").settings
    with pytest.raises(CaptainDataConfigError, match=r"settings: .*project_uid"):
        CaptainDataClient(settings=settings, project_uid="p")


def test_a_refused_key_of_a_plain_client_names_no_airflow_connection(captaindata_emulator: Any) -> None:
    client = CaptainDataClient(
        api_key="not-the-right-key", base_url=captaindata_emulator.base_url, retry_policy=FAST
    )
    with pytest.raises(CaptainDataAPIError) as info:
        client.get_workspaces()
    assert info.value.status_code == 401 and "connection" not in str(info.value).lower()


@pytest.mark.parametrize(
    ("hook", "client"), [(CaptainDataHook, CaptainDataClient), (CaptainDataAsyncHook, CaptainDataAsyncClient)]
)
def test_every_client_endpoint_is_on_its_hook_with_the_same_signature(hook: type, client: type) -> None:
    endpoints = [
        name
        for name, member in vars(client).items()
        if not name.startswith("_") and inspect.isfunction(member) and name != "get_settings"
    ]
    assert len(endpoints) >= 6
    for name in endpoints:
        assert inspect.signature(getattr(hook, name)) == inspect.signature(getattr(client, name)), name
        assert inspect.iscoroutinefunction(getattr(hook, name)) == inspect.iscoroutinefunction(
            getattr(client, name)
        ), name


def test_the_hook_calls_through_its_client(captaindata_emulator: Any) -> None:
    hook = CaptainDataHook(retry_policy=FAST)
    assert hook.get_workspaces() and hook.client.settings is hook.settings
    assert hook.client.retry_policy is FAST
