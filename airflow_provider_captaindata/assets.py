"""Assets (Airflow 2.11: Datasets) for the operators' results.

When an operator's results land (XCom or ``output_path``), every Asset in its ``outlets``
gets an asset event whose ``extra`` says which run produced what::

    {"run_uid": ..., "api_version": "v3", "workflow_uid": ... (v3) or "action": ... (v4)
     or "endpoint": ... (v1, whose run_uid is None),
     "rows": 120, "path": "file:///data/people.jsonl" (None for XCom)}

An ``AssetAlias`` in ``outlets`` gets an event for the Asset of the rendered ``output_path``
(the way to publish a path templated per run: an Asset URI itself cannot be templated).

:func:`captaindata_asset` builds the Asset of a fixed ``output_path`` with the same URI the
results are written to. Importing this module is cheap (it is meant for DAG files).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_captaindata.exceptions import CaptainDataConfigError

if TYPE_CHECKING:
    from airflow_provider_captaindata.hooks.captaindata import CaptainDataHook


class RunTask(Protocol):
    """What assets and lineage read of a run operator
    (:class:`~airflow_provider_captaindata.operators.base.CaptainDataRunOperatorBase`): this
    module and ``lineage`` depend on this shape, never on the operator class."""

    output_path: str | None
    landed: dict[str, Any] | None  # the asset events' extra once results landed (record_landed)

    @property
    def api_version(self) -> str: ...

    @property
    def run_uid(self) -> str | None: ...

    @property
    def hook(self) -> CaptainDataHook: ...

    @property
    def log(self) -> Any: ...  # a logging.Logger, or the Task SDK's structlog logger on Airflow 3


def output_uri(output_path: str) -> str:
    """The URI of ``output_path`` without the connection id an object-storage path may carry
    (``s3://aws_default@bucket/key`` -> ``s3://bucket/key``); a bare absolute path is ``file://``."""
    if not isinstance(output_path, str) or not output_path.strip():
        raise CaptainDataConfigError(f"output_path must be a path or URI string, got {output_path!r}")
    if "://" not in output_path:
        if not output_path.startswith("/"):
            raise CaptainDataConfigError(
                f"output_path {output_path!r}: an Asset needs an absolute path or a URI (file:///...)"
            )
        return "file://" + output_path
    parts = urlsplit(output_path)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def captaindata_asset(output_path: str, **asset_kwargs: Any) -> Any:
    """The Asset (Airflow 2.11: Dataset) of a fixed ``output_path``, for ``outlets=[...]`` of
    the operator writing there and ``schedule=[...]`` of the DAGs that read it.

    A templated path (``{{ run_id }}``...) names another file each run, which one Asset
    cannot stand for: use a fixed path (each run replaces the file whole), or put an
    ``AssetAlias`` in ``outlets``. ``asset_kwargs`` (``name``, ``group``, ``extra``) go to
    the Asset (Airflow 3).
    """
    from airflow.providers.common.compat.sdk import Asset

    if "{{" in str(output_path):
        raise CaptainDataConfigError(
            f"output_path {output_path!r} is templated: an Asset URI is fixed when the DAG is parsed. "
            "Use a fixed path (each run replaces the file), or outlets=[AssetAlias('...')] to "
            "publish the rendered path each run."
        )
    return Asset(uri=output_uri(output_path), **asset_kwargs)


def landed_rows(operator: RunTask, result: Any) -> int | None:
    """How many rows the task handed on, read from what it returns."""
    if isinstance(result, list):
        return len(result)
    if isinstance(result, Mapping) and ("path" in result or "run_uid" in result) and "rows" in result:
        return result["rows"]  # a file summary, or {run_uid, rows: None} without fetch_results
    if getattr(operator, "mode", None) == "async" and getattr(operator, "callback_url", None):
        return None  # the final run: the rows went to the author's own callback URL
    return 1  # a single-object answer of a live action


def event_extra(operator: RunTask, result: Any) -> dict[str, Any]:
    """The ``extra`` of the asset events for ``result``, also kept for OpenLineage."""
    extra: dict[str, Any] = {"run_uid": operator.run_uid, "api_version": operator.api_version}
    if operator.api_version == "v3":
        extra["workflow_uid"] = getattr(operator, "workflow_uid", None)
    elif operator.api_version == "v1":
        extra["endpoint"] = getattr(operator, "endpoint", None)
    else:
        extra["action"] = getattr(operator, "action", None)
    extra["rows"] = landed_rows(operator, result)
    extra["path"] = result.get("path") if operator.output_path and isinstance(result, Mapping) else None
    return extra


def record_landed(operator: RunTask, context: Any, result: Any) -> Any:
    """Results have landed: remember what for lineage, fill the outlets' asset events; returns
    ``result`` unchanged."""
    from airflow.providers.common.compat.sdk import Asset, AssetAlias

    extra = event_extra(operator, result)
    operator.landed = extra
    outlet_events = context.get("outlet_events")
    outlets = [o for o in (getattr(operator, "outlets", None) or []) if isinstance(o, Asset | AssetAlias)]
    if outlet_events is None or not outlets:
        return result
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            if extra["path"] is None:
                operator.log.warning(
                    "Outlet %s is an AssetAlias but the task has no output_path: no asset to add", outlet
                )
                continue
            outlet_events[outlet].add(Asset(uri=output_uri(str(operator.output_path))), extra=extra)
        else:
            outlet_events[outlet].extra.update(extra)
    operator.log.info("Asset events of %s carry %s", ", ".join(map(str, outlets)), extra)
    return result
