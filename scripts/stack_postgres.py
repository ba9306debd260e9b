"""The stack's metadata database: a throwaway PostgreSQL cluster on 127.0.0.1.

``make stack`` creates it (``initdb``) in a new folder, starts ``postgres`` on a free port,
TCP only (no Unix socket), with password authentication (a random password, in the Airflow
parts' environment only), and on exit stops it (fast shutdown, then SIGKILL) and removes the
folder. PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres``
user that Debian's package creates (the folder is then under the temporary directory, which
that user can reach whatever the checkout's permissions); otherwise to the current user.

Durability is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the
cluster lives for one run and is never crashed by the stack's faults, which hit Airflow's
parts. Transactions, locking and isolation, which Airflow's parts rely on when they share it,
are PostgreSQL's own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_services import HOST, StepFailed, _die_with_parent, free_port
from stack_pg_watchdog import become

USER = "airflow"  # the cluster's superuser, which Airflow connects as
DATABASE = "airflow"
STOP_GRACE_SECONDS = 15.0
SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",
    # 8 Airflow processes with SQLAlchemy pools (5 + 10 overflow each) and the Celery pool.
    "max_connections": "300",
    "shared_buffers": "64MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "log_connections": "off",
}
INSTALL_FIX = "apt-get install -y postgresql (`make stack-tools` does it when run as root)"


def bin_dir() -> Path:
    """Debian's PostgreSQL server binaries (not on PATH): ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    found: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            said = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
            found.append(Path(said.stdout.strip()))
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for folder in found:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise StepFailed("PostgreSQL's server (initdb, postgres) is not installed", INSTALL_FIX)


def _owner() -> pwd.struct_passwd | None:
    """The user the cluster runs as when this script is root (None: the current user)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise StepFailed(
            "PostgreSQL refuses to run as root, and there is no postgres user", INSTALL_FIX
        ) from None


class PostgresCluster:
    """``start()`` returns Airflow's ``sql_alchemy_conn``; ``stop()`` leaves nothing behind."""

    def __init__(self, base: Path, log: Path) -> None:
        self.record = base / "postgres-folder"  # where a killed stack's cluster was: removed next time
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.folder: Path | None = None
        self.timings: dict[str, float] = {}

    def start(self) -> str:
        self.remove_leftover()
        binaries, owner = bin_dir(), _owner()
        self.folder = Path(tempfile.mkdtemp(prefix="captaindata-stack-pg-"))
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(str(self.folder))
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        data = self.folder / "data"
        password = secrets.token_urlsafe(24)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)

        t = time.monotonic()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}"]
        initdb += ["--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        with self.log.open("wb") as out:
            done = subprocess.run(
                initdb,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=120,
                preexec_fn=become(owner.pw_name if owner is not None else None),
            )
        pwfile.unlink()
        if done.returncode != 0:
            raise StepFailed(f"initdb failed (exit code {done.returncode})", INSTALL_FIX, self.log)
        self.timings["initdb"] = time.monotonic() - t

        t = time.monotonic()
        self.port = free_port()
        argv = [str(binaries / "postgres"), "-D", str(data), "-p", str(self.port)]
        for name, value in SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        watchdog = [sys.executable, str(Path(__file__).resolve().parent / "stack_pg_watchdog.py")]
        watchdog += ["--user", owner.pw_name] if owner is not None else []
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*watchdog, "--", *argv],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the cluster in its own group: stopped together
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
            )
        self._create_database(password)
        self.timings["start"] = time.monotonic() - t
        return f"postgresql+psycopg2://{USER}:{password}@{HOST}:{self.port}/{DATABASE}"

    def _create_database(self, password: str, timeout: float = 60.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StepFailed(
                    f"postgres exited with code {self.proc.returncode}", "read its log", self.log
                )
            try:
                db = psycopg2.connect(
                    host=HOST, port=self.port, user=USER, password=password, dbname="postgres"
                )
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise StepFailed(
                        f"postgres did not accept connections within {timeout:.0f} s",
                        "read its log",
                        self.log,
                    ) from None
                time.sleep(0.1)
        try:
            db.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with db.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            db.close()

    def stop(self) -> None:
        """Fast shutdown (clients cut off, no waiting for them), SIGKILL after a grace; the
        folder removed."""
        if self.proc is not None:  # the watchdog: it passes the SIGINT on
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE_SECONDS)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # The watchdog and the postmaster; each backend has its own session and exits
                # when the postmaster is gone.
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.record.unlink(missing_ok=True)

    def remove_leftover(self) -> None:
        """The cluster of a stack that was killed before it could stop it: stopped and removed."""
        with contextlib.suppress(OSError):
            folder = Path(self.record.read_text().strip())
            if folder.name.startswith("captaindata-stack-pg-") and folder.parent == Path(
                tempfile.gettempdir()
            ):
                with contextlib.suppress(OSError, ValueError):
                    pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
                    if "postgres" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: its folder goes next
                        time.sleep(1.0)
                shutil.rmtree(folder, ignore_errors=True)
        self.record.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None
