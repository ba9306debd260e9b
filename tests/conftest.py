"""Test setup: a private AIRFLOW_HOME set before Airflow is imported, and helpers to run DAGs.

The ``captaindata_emulator`` fixture comes from the provider's own pytest plugin
(``airflow_provider_captaindata.emulator.pytest_plugin``), as it does for our users.
"""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="captaindata-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", os.path.join(_HOME, "dags"))
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
os.makedirs(os.path.join(_HOME, "dags"), exist_ok=True)

import pytest  # noqa: E402

from tests.airflow_helpers import AIRFLOW_3  # noqa: E402

# The s3_server fixture (a real SeaweedFS S3 server on 127.0.0.1), for any test folder.
pytest_plugins = ("tests.s3_server",)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated metadata database for tests that run real DAGs (dag.test())."""
    from airflow.utils import db

    db.resetdb()
    return _HOME


# Run on the newest and the oldest Airflow line only (scripts/test-lines.sh): the emulator's own
# tests and the randomized explorations, whose code does not change between those lines.
EDGE_LINES_FOLDERS = ("emulator", "invariants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs Airflow 3")
    for item in items:
        folder = item.path.parent.name
        if folder in EDGE_LINES_FOLDERS or item.name.endswith("_fuzz"):
            item.add_marker(pytest.mark.edge_lines)
        if not AIRFLOW_3 and "airflow3" in item.keywords:
            item.add_marker(skip)
