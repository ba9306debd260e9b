"""OpenLineage for the operators (with the ``openlineage`` extra: the Airflow OpenLineage provider).

The operators' ``get_openlineage_facets_on_start`` / ``_on_complete`` / ``_on_failure`` call
:func:`operator_lineage`; only they import this module, so OpenLineage costs nothing when a
DAG file is parsed, and nothing at all without the provider.

* Input dataset: the Captain Data source, namespace :data:`NAMESPACE`, name
  ``workflows/<workflow_uid>`` (v3) or ``actions/<action>`` (v4), with a ``schema`` facet:
  the output schema of the workflow's last step (read from the API) or the action's output
  fields in the catalog.
* Output dataset: ``output_path`` under OpenLineage's naming (``file`` + absolute path,
  ``s3://bucket`` + key, ``<scheme>://<host>`` + path), with the same schema and an
  ``outputStatistics`` facet (rows written). Results kept in XCom make no output dataset.
* Run facets: ``externalQuery`` (the Captain Data run uid; live v4 calls have none) and, when
  the run failed, ``errorMessage`` with the run's status and Captain Data's message.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from airflow.providers.common.compat.openlineage.facet import (
    ErrorMessageRunFacet,
    ExternalQueryRunFacet,
    InputDataset,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.providers.openlineage.extractors import OperatorLineage

from airflow_provider_captaindata.assets import RunTask, output_uri
from airflow_provider_captaindata.client.statuses import RunState
from airflow_provider_captaindata.exceptions import CaptainDataError, CaptainDataRunError
from airflow_provider_captaindata.params import is_templated

# One namespace for Captain Data whatever the API generation or the connection's host: an
# emulator or a proxy in between does not make the workflow another dataset.
NAMESPACE = "captaindata://api.captaindata.com"

Stage = Literal["start", "complete", "failure"]


def source_name(operator: RunTask) -> str | None:
    """``workflows/<uid>``, ``actions/<name>`` or ``v1/<endpoint>``; None while still a template."""
    if operator.api_version == "v1":
        return f"v1/{getattr(operator, 'endpoint', '')}"
    what, value = (
        ("workflows", getattr(operator, "workflow_uid", None))
        if operator.api_version == "v3"
        else ("actions", getattr(operator, "action", None))
    )
    return None if not value or is_templated(value) else f"{what}/{value}"


def output_dataset_name(output_path: str) -> tuple[str, str]:
    """(namespace, name) of a results file under OpenLineage's dataset naming."""
    parts = urlsplit(output_uri(output_path))
    if parts.scheme == "file":
        return (f"file://{parts.netloc}" if parts.netloc else "file"), parts.path
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def schema_fields(operator: RunTask) -> list[tuple[str, str]]:
    """(name, type) of each result field; empty when unknown."""
    if operator.api_version == "v1":
        from airflow_provider_captaindata.client.v1 import get_endpoint

        schema = get_endpoint(str(getattr(operator, "endpoint", ""))).response_schema
        return [(n, str((p or {}).get("type", ""))) for n, p in (schema.get("properties") or {}).items()]
    if operator.api_version == "v4":
        from airflow_provider_captaindata.client.catalog import get_action

        spec = get_action(str(getattr(operator, "action", "")))
        return [(n, t.split(":")[0]) for n, t in spec.output_fields.items()] if spec else []
    try:
        details = operator.hook.get_workflow_details(str(getattr(operator, "workflow_uid", "")))
    except CaptainDataError as exc:  # lineage must never fail the task: say why there is no schema
        operator.log.warning("OpenLineage: no schema for the workflow's results (%s)", exc)
        return []
    if not details.steps:
        return []
    last = max(details.steps, key=lambda s: s.position or 0)
    schema = (last.model_extra or {}).get("output_schema") or {}
    properties = schema.get("properties") or {}
    return [(n, str((p or {}).get("type", ""))) for n, p in properties.items()]


def run_error(operator: RunTask, run_uid: str) -> str | None:
    """Why the run failed, as the task reported it; None when the run itself did not fail
    (the task failed for another reason: a timeout, too many rows for XCom...)."""
    try:
        snapshot = operator.hook.get_run(operator.api_version, run_uid)
    except CaptainDataError as exc:
        operator.log.warning("OpenLineage: could not read run %s for its error (%s)", run_uid, exc)
        return None
    if snapshot.state not in (
        RunState.FAILED,
        RunState.CANCELLED,
        RunState.NEEDS_ATTENTION,
        RunState.UNKNOWN,
    ):
        return None
    return str(CaptainDataRunError(run_uid, snapshot.status, snapshot.message or snapshot.status))


def operator_lineage(operator: RunTask, stage: Stage) -> OperatorLineage:
    """The datasets and facets of one task event (see the module docstring)."""
    landed = operator.landed or {}
    fields = [] if stage == "start" else schema_fields(operator)
    facets: dict[str, Any] = {}
    if fields:
        facets["schema"] = SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=n, type=t or None) for n, t in fields]
        )
    name = source_name(operator)
    inputs = [InputDataset(namespace=NAMESPACE, name=name, facets=facets)] if name else []
    outputs = []
    if operator.output_path and not is_templated(operator.output_path):
        namespace, path = output_dataset_name(str(operator.output_path))
        stats: dict[str, Any] = {}
        if landed.get("rows") is not None:
            stats["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=landed["rows"])
        outputs.append(OutputDataset(namespace=namespace, name=path, facets=facets, outputFacets=stats))
    run_facets: dict[str, Any] = {}
    run_uid = operator.run_uid
    if run_uid:
        run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=run_uid, source=NAMESPACE)
        error = run_error(operator, run_uid) if stage == "failure" else None
        if error:
            run_facets["errorMessage"] = ErrorMessageRunFacet(message=error, programmingLanguage="python")
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)
