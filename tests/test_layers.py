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


def _import_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package modules it imports, at any depth of the file
    (function-local and TYPE_CHECKING imports count: a circle held open by them is still one)."""
    import ast
    from pathlib import Path

    import airflow_provider_captaindata as package

    root = Path(package.__path__[0])
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t.startswith(package.__name__ + ".")}
    return {name: {t for t in targets if t in graph and t != name} for name, targets in graph.items()}


def _circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    found: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for target in graph[node]:
            if target in path:
                found.add(frozenset(path[path.index(target) :]))
            elif len(path) < 12:
                walk(target, [*path, target])

    for start in graph:
        walk(start, [start])
    return found


def test_the_lineage_and_assets_helpers_do_not_import_the_operators() -> None:
    graph = _import_graph()
    for helper in ("airflow_provider_captaindata.assets", "airflow_provider_captaindata.lineage"):
        assert not {m for m in graph[helper] if ".operators" in m}, helper


def test_no_import_circle_in_the_airflow_layer() -> None:
    # Among them: assets/lineage/operators.base (a protocol breaks it) and operators.actions/
    # operators.fanout (a frozen FanOutSpec breaks it).
    layer = (".operators", ".assets", ".lineage", ".hooks", ".sensors", ".triggers", ".client")
    circles = {c for c in _circles(_import_graph()) if any(part in m for m in c for part in layer)}
    assert not circles, [sorted(c) for c in circles]


def test_no_import_circle_in_the_emulator() -> None:
    # The package's __init__ names its server for type checkers (server -> app -> the API
    # modules): a module importing a sibling through the package (``from ...emulator import
    # v1_fakes``) closes a circle through it; ``import ...emulator.v1_fakes as fakes`` does not.
    circles = {c for c in _circles(_import_graph()) if any(".emulator" in m for m in c)}
    assert not circles, [sorted(c) for c in circles]


def test_parsing_a_dag_imports_no_async_client() -> None:
    # The async hook, its client and aiohttp come on first use (triggers, the fan-out), not
    # when a DAG file imports the operators, the sensor or the hook module.
    code = textwrap.dedent(
        """
        import sys
        import airflow_provider_captaindata.hooks.captaindata
        import airflow_provider_captaindata.operators.actions
        import airflow_provider_captaindata.operators.workflows
        import airflow_provider_captaindata.sensors.runs
        ours = [m for m in sys.modules if m.startswith("airflow_provider_c") and m.endswith("_async")]
        loaded = sorted(ours + [m for m in sys.modules if m == "aiohttp"])
        assert not loaded, loaded
        from airflow_provider_captaindata.hooks.captaindata import CaptainDataAsyncHook
        print(CaptainDataAsyncHook.__module__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, env=CLEAN_ENV
    )
    assert result.stdout.strip() == "airflow_provider_captaindata.hooks.captaindata_async", result.stderr
