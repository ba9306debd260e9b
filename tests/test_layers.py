"""The client layer (``airflow_provider_captaindata.client``) never imports Airflow.

A plain script (or the emulator, or a non-Airflow service) can use the Captain Data client;
the Airflow integration sits on top of it, never under it.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import textwrap

import airflow_provider_captaindata.client as client_package

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}


def _client_modules() -> list[str]:
    names = [client_package.__name__]
    for info in pkgutil.walk_packages(client_package.__path__, prefix=client_package.__name__ + "."):
        names.append(info.name)
    return names


def test_the_client_layer_lists_its_modules() -> None:
    # Guards the next test against passing vacuously on an empty walk.
    names = _client_modules()
    assert "airflow_provider_captaindata.client.transport" in names
    assert "airflow_provider_captaindata.client.catalog" in names


def test_the_client_layer_never_imports_airflow() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {_client_modules()!r}:
            importlib.import_module(name)
        leaked = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, env=CLEAN_ENV
    )
    assert result.stdout.strip() == "ok", result.stderr
