"""Which launch a run belongs to, so that a retry resumes only its own run.

A launch is identified by the task instance (DAG, task, logical run, map index), the Airflow
deployment (two deployments, say staging and prod, may share a Captain Data workspace) and a
fingerprint of what is launched (workflow or action, inputs, steps, parameters...). A
cleared task whose inputs changed is a new launch: it never picks up the old run.

The identity is carried by the run itself: in its v3 ``job_name`` and, for v4, in its
callback URL (the launch key). Both are built from one digest over an unambiguous encoding
(a JSON array), so ``dag a__b``/``task c`` and ``dag a``/``task b__c`` never meet.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_captaindata.checkpoint import is_retry
from airflow_provider_captaindata.client.lookups import LOOKUP_CLOCK_MARGIN

FIRST_TRY_KEY = "captaindata_first_try_at"  # task_state_store key: when the first try began
DEFAULT_DEPLOYMENT = "airflow"
# (uncertain) The API reference gives no limit for a v3 job_name; names stay within this.
MAX_JOB_NAME = 255
TAG_LENGTH = 16  # hex characters of the digest in a job name (64 bits)
# Where Airflow says where it is served, in order; the first one set names the deployment.
# Never [core] execution_api_server_url: it says how one worker reaches an API server, which
# differs between workers of one deployment (two API servers), and a retry on another worker
# would not find its own run.
DEPLOYMENT_URL_OPTIONS = {
    3: (("api", "base_url"),),
    2: (("webserver", "base_url"),),  # deprecated on Airflow 3: not read there
}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(launched: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of what a launch sends, independent of key order."""
    return hashlib.sha256(canonical_json(dict(launched)).encode()).hexdigest()


def airflow_deployment() -> str:
    """The deployment's name when the connection does not set ``deployment``: the host (and
    port) of the URL Airflow is served at, the same on every worker of one deployment."""
    from airflow import __version__
    from airflow.providers.common.compat.sdk import conf

    for section, key in DEPLOYMENT_URL_OPTIONS[3 if int(__version__.split(".")[0]) >= 3 else 2]:
        value = conf.get(section, key, fallback=None)
        netloc = urlsplit(value).netloc if value else ""
        if netloc:
            return netloc.rsplit("@", 1)[-1]  # never credentials from a URL
    return DEFAULT_DEPLOYMENT


def _readable(part: str) -> str:
    # Escapes only what could blur the fields of a name: "%" and the separator.
    return part.replace("%", "%25").replace("|", "%7C")


@dataclass(frozen=True)
class LaunchIdentity:
    """One launch: the task instance, the deployment and the fingerprint of what it sends."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    deployment: str
    fingerprint: str

    @property
    def digest(self) -> str:
        fields = [self.dag_id, self.task_id, self.run_id, self.map_index, self.deployment, self.fingerprint]
        return hashlib.sha256(canonical_json(fields).encode()).hexdigest()

    @property
    def launch_key(self) -> str:
        """The v4 launch key: 24 lowercase hex characters (the callback URL carries it)."""
        return self.digest[:24]

    def job_name(self, custom: str | None = None) -> str:
        """The v3 run name: readable in the Captain Data UI, ending with the launch's tag.

        ``airflow|{dag_id}|{task_id}|{run_id}|{map_index}|{deployment}|#{tag}``, or the
        author's ``custom`` name followed by `` #{tag}``; shortened (never the tag) past
        :data:`MAX_JOB_NAME` characters."""
        tag = f"#{self.digest[:TAG_LENGTH]}"
        if custom:
            readable, separator = custom, " "
        else:
            parts = (self.dag_id, self.task_id, self.run_id, str(self.map_index), self.deployment)
            readable, separator = "|".join(["airflow", *map(_readable, parts)]), "|"
        room = MAX_JOB_NAME - len(separator) - len(tag)
        if len(readable) > room:
            readable = readable[: room - 1] + "~"
        return f"{readable}{separator}{tag}"


def identity_for(context: Any, deployment: str, launched: Mapping[str, Any]) -> LaunchIdentity:
    """The identity of the launch this task instance makes with ``launched``."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", None)
    return LaunchIdentity(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=context["run_id"],
        map_index=-1 if map_index is None else int(map_index),
        deployment=deployment,
        fingerprint=fingerprint(launched),
    )


def lookup_since(context: Any) -> float | None:
    """Epoch seconds from which a lookup must read runs to see every run this task instance
    may have launched (and every live call it may have made): its first try's start, less
    :data:`LOOKUP_CLOCK_MARGIN`.

    Airflow 3.3+ keeps that start in ``task_state_store`` (set by the first try; it survives
    retries and clears). Every line also knows the DAG run's start, which comes before the
    first try; but a clear of a finished DAG run, or a 2.11 backfill that reruns its failed
    tasks, starts it again, after the tries before. So a later try (``try_number`` > 1: only
    it has tries before it) also reads back to when the DAG run was due (``run_after``; on
    2.11 the end of its data interval, or its logical date), which comes before every try.
    The earliest is used; with none (a bare test context), None: every run the API lists."""
    starts: list[float] = []
    store = context.get("task_state_store")
    if store is not None:
        first = store.get(FIRST_TRY_KEY)
        if not isinstance(first, int | float) or isinstance(first, bool):
            first = time.time()
            store.set(FIRST_TRY_KEY, first)
        starts.append(float(first))
    dag_run = context.get("dag_run")
    moments = [getattr(dag_run, "start_date", None)]
    if is_retry(context):
        due = ("run_after", "data_interval_end", "logical_date")
        moments.append(next(filter(None, (getattr(dag_run, name, None) for name in due)), None))
    starts.extend(moment.timestamp() for moment in moments if moment is not None)
    return min(starts) - LOOKUP_CLOCK_MARGIN if starts else None
