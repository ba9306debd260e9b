"""``output_path`` errors name the real cause when Airflow's ObjectStoragePath itself fails."""

from __future__ import annotations

import pytest

from airflow_provider_captaindata.exceptions import CaptainDataConfigError
from airflow_provider_captaindata.results import object_storage_path, unsupported_pathlib_hint


def test_unknown_scheme_names_the_underlying_error() -> None:
    with pytest.raises(CaptainDataConfigError) as caught:
        object_storage_path("nosuchscheme://bucket/x.jsonl")
    message = str(caught.value)
    assert "'nosuchscheme://bucket/x.jsonl'" in message
    assert "ValueError: " in message  # the exception ObjectStoragePath raised, by type and message
    assert "'nosuchscheme' scheme" in message


@pytest.mark.parametrize(
    ("airflow", "pathlib", "pinned"),
    [
        ("3.0.6", "0.3.10", True),
        ("3.0.2", "0.3.0", True),
        ("3.0.6", "0.2.6", False),
        ("3.2.2", "0.3.10", False),
    ],
)
def test_pathlib_hint_only_where_airflow_cannot_use_it(airflow: str, pathlib: str, pinned: bool) -> None:
    hint = unsupported_pathlib_hint(airflow, pathlib)
    if pinned:
        assert hint is not None
        assert f"universal-pathlib {pathlib} is not supported by Airflow {airflow}" in hint
        assert "universal-pathlib<0.3" in hint
    else:
        assert hint is None


def test_installed_versions_give_no_hint() -> None:
    # Every committed lock pins a universal-pathlib its Airflow works with.
    assert unsupported_pathlib_hint() is None
    assert object_storage_path("file:///tmp/x.jsonl") is not None
