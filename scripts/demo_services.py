"""Starting and stopping the demo's processes: the emulator and the Airflow parts.

Shared by ``scripts/demo.py`` (``make demo``), ``scripts/ui_check.py`` and ``scripts/stack.py``
(``make stack``: several API servers and triggerers, a Celery worker). Everything lives
under ``.demo/`` (gitignored): the Airflow home with its SQLite database, one log file per
process in ``.demo/logs/``, result files and callback pages. Every process is bound to
127.0.0.1, started in its own session (so its children are stopped with it) and stopped by
its process group id: nothing else on the machine is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
LOG_DIR = DEMO_DIR / "logs"
AIRFLOW_HOME = DEMO_DIR / "airflow"
DAGS_DIR = ROOT / "dags_examples"
HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 25.0  # the triggerer alone takes ~12 s to exit


class StepFailed(Exception):
    """A step that could not be done: what failed, how to fix it, and which log tells more."""

    def __init__(self, problem: str, fix: str, log: Path | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.log = log

    def report(self, heading: str) -> None:
        """Print the failure to stderr: ``{heading}{problem}``, the log's last lines, the fix."""
        print(f"{heading}{self.problem}", file=sys.stderr)
        if self.log is not None:
            where = self.log.relative_to(ROOT) if self.log.is_relative_to(ROOT) else self.log
            print(f"  last lines of {where}:\n{log_tail(self.log)}", file=sys.stderr)
        print(f"  fix: {self.fix}", file=sys.stderr)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"    ({path} is missing)"
    return "\n".join("    " + line[:220] for line in text[-lines:]) or "    (empty)"


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if nothing listens there, else any free port on 127.0.0.1."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise StepFailed("no free TCP port on 127.0.0.1", "close some programs and retry")


def _die_with_parent() -> None:
    # Linux: if this script is killed outright (SIGKILL), the kernel sends SIGTERM to the child,
    # so even then no Airflow part is left running.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    argv: list[str]
    env: dict[str, str]


@dataclass
class Supervisor:
    """The processes this script started; ``stop_all`` ends them (also on errors and Ctrl-C)."""

    log_dir: Path = LOG_DIR
    label: str = "demo"  # names the script in what it prints
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], append: bool = False) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab" if append else "wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stopped with its children
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded at this point
            )
        service = Service(name, proc, log, list(argv), dict(env))
        self.services.append(service)
        return service

    def get(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"no process named {name!r} (known: {', '.join(s.name for s in self.services)})")

    def kill(self, name: str) -> Service:
        """SIGKILL a process and its whole group (a lost machine: nothing gets to clean up)."""
        service = self.get(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.proc.pid, signal.SIGKILL)
        service.proc.wait(10)
        self.services.remove(service)
        return service

    def stop(self, name: str) -> None:
        """Stop one process as ``stop_all`` does (SIGTERM, bounded wait, then SIGKILL)."""
        service = self.get(name)
        self.services.remove(service)
        Supervisor(self.log_dir, self.label, [service]).stop_all(quiet=True)

    def restart(self, name: str, kill: bool = False) -> Service:
        """Stop (or ``kill``) a process and start it again, its log appended to."""
        service = self.get(name)
        (self.kill if kill else self.stop)(name)
        return self.start(name, service.argv, service.env, append=True)

    def check(self) -> None:
        """Raise StepFailed naming the first process that exited on its own."""
        for service in self.services:
            code = service.proc.poll()
            if code is not None:
                raise StepFailed(
                    f"{service.name} exited with code {code}",
                    f"read {service.log.relative_to(ROOT)}; a port or database problem is the usual cause",
                    service.log,
                )

    def stop_all(self, quiet: bool = False) -> None:
        """SIGTERM every process group, wait (bounded), SIGKILL what is left."""
        alive = [s for s in self.services if s.proc.poll() is None]
        if alive and not quiet:
            print(f"{self.label}: stopping {', '.join(s.name for s in alive)} ...", flush=True)
        for service in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for service in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(max(0.1, deadline - time.monotonic()))
        for service in self.services:
            # The leader may be gone while children of its group are not: kill the group anyway.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service.proc.pid, signal.SIGKILL)
                if service.proc.poll() is None and not quiet:
                    print(f"{self.label}: {service.name} did not stop in {STOP_GRACE_SECONDS:.0f} s: killed")
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(5)
        self.services.clear()


@contextlib.contextmanager
def supervised(log_dir: Path = LOG_DIR, label: str = "demo") -> Iterator[Supervisor]:
    """A Supervisor whose processes are stopped on exit, Ctrl-C and SIGTERM included."""
    supervisor = Supervisor(log_dir, label)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield supervisor
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, lambda *_: print(f"{label}: still stopping, please wait", flush=True))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            supervisor.stop_all()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)


def start_emulator(
    supervisor: Supervisor, settings: Mapping[str, Any], timeout: float = 30.0, extra_args: Sequence[str] = ()
) -> str:
    """The emulator CLI on a free port; returns its base URL (the first line it prints)."""
    argv = [sys.executable, "-m", "airflow_provider_captaindata.emulator", "--host", HOST, "--port", "0"]
    argv += extra_args
    for name, value in settings.items():
        argv += ["--set", f"{name}={json.dumps(value)}"]
    service = supervisor.start("emulator", argv, os.environ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = service.log.read_text(errors="replace").split("\n", 1)
        if len(first) == 2 and first[0].startswith("http"):
            return first[0].strip()
        supervisor.check()
        time.sleep(0.1)
    raise StepFailed(
        f"the emulator printed no URL within {timeout:.0f} s",
        "run `.venv/bin/captaindata-emulator --port 0` by hand to see why",
        service.log,
    )


def airflow_env(
    api_port: int,
    connection: Mapping[str, Any],
    extra: Mapping[str, str],
    home: Path = AIRFLOW_HOME,
    api_url: str | None = None,
) -> dict[str, str]:
    """The environment shared by every Airflow part: home, DAGs, auth, sizes, the connection.

    ``api_url`` is where the other parts reach the API (a load balancer in front of several
    API servers); by default the one API server on ``api_port``."""
    api = api_url or f"http://{HOST}:{api_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",  # 2 shared cores: a few task processes at a time
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # local demo: no login
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            # One secret for all parts: the scheduler signs task tokens the API server checks.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(64),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_CAPTAINDATA_DEFAULT": json.dumps(connection),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def airflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def migrate(env: Mapping[str, str], log_dir: Path = LOG_DIR, timeout: float = 300.0) -> None:
    """``airflow db migrate`` on a new SQLite database in ``$AIRFLOW_HOME``."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "db-migrate.log"
    with log.open("wb") as out:
        try:
            code = subprocess.run(
                airflow("db", "migrate"),
                cwd=ROOT,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        raise StepFailed(
            "`airflow db migrate` failed"
            if code is not None
            else f"`airflow db migrate` took over {timeout} s",
            "`make clean env` rebuilds the environment; `rm -rf .demo` starts the demo from scratch",
            log,
        )


AIRFLOW_PARTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def start_airflow(
    supervisor: Supervisor, env: Mapping[str, str], api_port: int, parts: Sequence[str] = AIRFLOW_PARTS
) -> None:
    """The four parts (or those of ``parts``), each bound to 127.0.0.1 or serving nothing (no
    log servers)."""
    argv = {
        "api-server": airflow("api-server", "--host", HOST, "--port", str(api_port)),
        "scheduler": airflow("scheduler", "--skip-serve-logs"),
        "dag-processor": airflow("dag-processor"),
        "triggerer": airflow("triggerer", "--skip-serve-logs"),
    }
    for part in parts:
        supervisor.start(part, argv[part], env)


class AirflowApi:
    """The Airflow 3 public REST API with a JWT from the simple auth manager."""

    def __init__(self, base_url: str, log_dir: Path = LOG_DIR) -> None:
        self.base_url = base_url
        self.log = log_dir / "api-server.log"
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def wait_until_up(self, supervisor: Supervisor, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            supervisor.check()
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/api/v2/monitor/health").status_code == 200:
                    self._login()
                    return
            time.sleep(1.0)
        raise StepFailed(
            f"the API at {self.base_url} did not answer within {timeout:.0f} s",
            "the machine may be busy: retry, or read the api-server log",
            self.log,
        )

    def _login(self) -> None:
        # With all_admins, GET /auth/token hands out an admin token without credentials.
        answer = self.http.get("/auth/token")
        if answer.status_code >= 400:
            answer = self.http.post("/auth/token", json={"username": "admin", "password": "admin"})
        answer.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, f"/api/v2{path}", **kwargs)
        if answer.status_code >= 400:
            raise StepFailed(
                f"{method} /api/v2{path} answered {answer.status_code}: {answer.text[:300]}",
                "read the api-server log",
                self.log,
            )
        return answer.json() if answer.content else None

    def close(self) -> None:
        self.http.close()


def wait_for_dags(
    api: AirflowApi,
    supervisor: Supervisor,
    expected: list[str],
    timeout: float = 180.0,
    log_dir: Path = LOG_DIR,
) -> None:
    """Until the dag-processor has parsed every DAG of ``expected``; an import error fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        errors = api.call("GET", "/importErrors").get("import_errors", [])
        if errors:
            first = errors[0]
            raise StepFailed(
                f"{first.get('filename')} does not import:\n{first.get('stack_trace', '')[-1500:]}",
                "fix the example DAG; `pytest tests/test_examples.py` shows the same error",
            )
        found = {d["dag_id"] for d in api.call("GET", "/dags", params={"limit": 100})["dags"]}
        if set(expected) <= found:
            return
        time.sleep(2.0)
    raise StepFailed(
        f"the dag-processor did not parse {sorted(set(expected) - found)} within {timeout:.0f} s",
        "read the dag-processor log",
        log_dir / "dag-processor.log",
    )
