"""Modules moved into ``client/`` keep their old import path for one release, with a
DeprecationWarning; the old module is the new one (same classes, so isinstance and except
keep working)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from airflow_provider_captaindata._moved import MOVED


def _fresh_import(name: str) -> object:
    # Another test may have imported the old path already: import it anew.
    sys.modules.pop(name, None)
    parent, _, leaf = name.rpartition(".")
    if leaf in vars(sys.modules[parent]):
        delattr(sys.modules[parent], leaf)
    return importlib.import_module(name)


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_warns_and_is_the_new_module(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"^{old} moved to {new}; "):
        module = _fresh_import(old)
    assert module is importlib.import_module(new)


def test_the_old_imports_the_docs_named_still_work() -> None:
    from airflow_provider_captaindata.client.settings import ConnectionSettings
    from airflow_provider_captaindata.client.transport import RetryPolicy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _fresh_import("airflow_provider_captaindata.http")
        _fresh_import("airflow_provider_captaindata.connection")
        from airflow_provider_captaindata.connection import ConnectionSettings as OldSettings
        from airflow_provider_captaindata.http import RetryPolicy as OldPolicy

    assert OldPolicy is RetryPolicy and OldSettings is ConnectionSettings
    assert OldPolicy(attempts=2) == RetryPolicy(attempts=2)


def test_the_warning_points_at_the_importing_line() -> None:
    # In a fresh interpreter: pytest's import hook adds frames of its own to the stack.
    code = "import airflow_provider_captaindata.http\nfrom airflow_provider_captaindata.models import V4Run\n"
    result = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stderr.splitlines() if "DeprecationWarning" in line]
    assert [line.split(": ")[0] for line in lines] == ["<string>:1", "<string>:2"], result.stderr
