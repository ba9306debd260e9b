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


# s3fs made unimportable in a child process: what a worker without the s3 extra sees.
_WITHOUT_S3FS = """
import sys

class NoS3fs:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "s3fs":
            raise ImportError("No module named 's3fs'")

sys.meta_path.insert(0, NoS3fs())
from airflow_provider_captaindata.results import object_storage_path
try:
    object_storage_path(sys.argv[1])
except Exception as exc:
    print("MESSAGE=" + str(exc))
"""


def _message_without_s3fs(path: str) -> str:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_S3FS, path], capture_output=True, text=True, timeout=120, check=True
    )
    # Airflow 3.0 logs its provider discovery to stdout too: the message is the marked line.
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("MESSAGE=")]
    return line.removeprefix("MESSAGE=")


def test_s3_without_its_extra_names_the_extra_as_the_docs_quote_it() -> None:
    import re
    from pathlib import Path

    message = _message_without_s3fs("s3://my-bucket/rows.jsonl")
    assert 'pip install "airflow-provider-captaindata[s3]"' in message, message
    # The docs quote it with the path and the underlying cause elided, word for word.
    quoted = re.sub(
        r" \(.*\)\. Install", " (...). Install", message.replace("s3://my-bucket/rows.jsonl", "s3://...")
    )
    docs = Path(__file__).resolve().parent.parent / "docs"
    for page in ("troubleshooting.md", "results.md"):
        assert quoted in (docs / page).read_text(), f"docs/{page} does not quote: {quoted}"


def test_a_scheme_without_an_extra_names_what_to_install() -> None:
    with pytest.raises(CaptainDataConfigError) as caught:
        object_storage_path("nosuchscheme://bucket/x.jsonl")
    assert "Install the Airflow provider or fsspec package for the 'nosuchscheme' scheme" in str(caught.value)
