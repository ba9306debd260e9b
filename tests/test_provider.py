"""The provider registers with Airflow: schema-valid provider info, listed by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_captaindata import __version__
from airflow_provider_captaindata.get_provider_info import get_provider_info
from tests.airflow_helpers import AIRFLOW_VERSION_INFO


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-captaindata"
    assert info["versions"] == [__version__]


def test_entry_point_points_at_get_provider_info() -> None:
    (ep,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.value.startswith("airflow_provider_captaindata")
    ]
    assert ep.load() is get_provider_info


def test_every_listed_module_and_class_imports() -> None:
    import importlib

    info = get_provider_info()
    modules = [
        m
        for key in ("hooks", "operators", "sensors", "triggers")
        for item in info[key]
        for m in item["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    for dotted in [info["connection-types"][0]["hook-class-name"], *info["extra-links"]]:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted


def _airflow_cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"},
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("providers", "list", "-o", "json"), "airflow-provider-captaindata"),
        (
            ("providers", "hooks", "-o", "json"),
            "airflow_provider_captaindata.hooks.captaindata.CaptainDataHook",
        ),
    ],
)
def test_airflow_cli_lists_the_provider(command: tuple[str, ...], expected: str) -> None:
    assert expected in _airflow_cli(*command)


@pytest.mark.skipif(
    (3, 0) <= AIRFLOW_VERSION_INFO < (3, 2),
    reason="Airflow 3.0 and 3.1 register WTForms widgets only with FAB (the UI test below covers 3.1)",
)
def test_connection_form_fields_are_registered() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    widgets = pm.connection_form_widgets
    for field in ("project_uid", "rate_limit_per_second", "v3_base_url", "v4_base_url", "callback_secret"):
        assert f"extra__captaindata__{field}" in widgets, field
    behaviour = pm.field_behaviours["captaindata"]
    assert behaviour["relabeling"]["password"] == "API key"


UI_FORM = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "captaindata"]
print(json.dumps({"extra": sorted(meta.extra_fields or {}), "standard": meta.standard_fields.model_dump()}))
"""


@pytest.mark.airflow3
@pytest.mark.skipif(
    AIRFLOW_VERSION_INFO < (3, 1),
    reason="Airflow 3.0's UI shows no provider's extra fields without FAB (nor its own fs and smtp ones)",
)
def test_connection_form_as_the_airflow_3_ui_builds_it() -> None:
    # The API server's own form service (it stands in for FAB, so in a process of its own).
    result = subprocess.run(
        [sys.executable, "-c", UI_FORM], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    form = json.loads(result.stdout.strip().splitlines()[-1])
    for field in ("project_uid", "rate_limit_per_second", "v3_base_url", "v4_base_url", "callback_secret"):
        assert field in form["extra"] or f"extra__captaindata__{field}" in form["extra"], form["extra"]
    assert form["standard"]["password"]["title"] == "API key"


def test_provider_documentation_url_comes_from_the_package_metadata() -> None:
    """Airflow reads documentation-url from the distribution's "Documentation" Project-URL
    (3.x); it was None before pyproject.toml had [project.urls]."""
    from importlib.metadata import distribution

    urls = dict(
        entry.split(", ", 1)
        for entry in distribution("airflow-provider-captaindata").metadata.get_all("Project-URL") or []
    )
    assert urls["Documentation"].startswith("https://")
    from airflow.providers_manager import ProvidersManager

    data = ProvidersManager().providers["airflow-provider-captaindata"].data
    if "documentation-url" in data:  # Airflow 2.11 does not read it
        # Airflow 3.0 to 3.2 split "Documentation, URL" on the comma alone and keep the space.
        assert data["documentation-url"].strip() == urls["Documentation"]
