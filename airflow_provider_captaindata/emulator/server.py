"""``CaptainDataEmulator``: the emulator served by uvicorn on a background thread.

The server runs its own event loop on its own thread; everything the Python API does goes
through the control API over loopback HTTP, exactly as it would against an emulator started
by the CLI, so there is one way in and no shared-state locking.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType
from typing import Any

from airflow_provider_captaindata.emulator.client import EmulatorClient
from airflow_provider_captaindata.emulator.settings import (
    DEFAULT_API_KEY,
    DEFAULT_HOST,
    DEFAULT_PROJECT_UID,
    DEFAULT_SEED,
)

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class CaptainDataEmulator(EmulatorClient):
    """A Captain Data API emulator on ``host:port`` (port 0: any free port).

    ``start()`` returns once it accepts connections; ``base_url`` is then
    ``http://HOST:PORT`` (v3 under ``/v3``, v4 under ``/v4``, control under ``/_emulator``),
    or ``https://`` with ``ssl_certfile`` and ``ssl_keyfile`` (PEM files, e.g. a self-signed
    certificate the clients trust through ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``).
    ``stop()`` or the ``with`` block ends it. ``settings`` are applied at start."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        project_uid: str = DEFAULT_PROJECT_UID,
        seed: int = DEFAULT_SEED,
        *,
        settings: dict[str, Any] | None = None,
        log_level: str = "warning",
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        super().__init__("", api_key=api_key, project_uid=project_uid)
        self._base_url = None
        self.host = host
        self.port = port
        self.seed = seed
        self._initial_settings = dict(settings or {})
        self._log_level = log_level
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: give both or neither")
        self._ssl_certfile = ssl_certfile
        self._ssl_keyfile = ssl_keyfile
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"CaptainDataEmulator({where}, seed={self.seed})"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CaptainDataEmulator:
        if self.running:
            return self
        import uvicorn

        from airflow_provider_captaindata.emulator.app import EmulatorApp
        from airflow_provider_captaindata.emulator.state import EmulatorState

        state = EmulatorState(
            self._api_key or DEFAULT_API_KEY, self._project_uid or DEFAULT_PROJECT_UID, self.seed
        )
        if self._initial_settings:
            state.configure(self._initial_settings)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            EmulatorApp(state),
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            server_header=False,
            ssl_certfile=self._ssl_certfile,
            ssl_keyfile=self._ssl_keyfile,
        )
        self._server = uvicorn.Server(config)
        self._failure = None
        self._thread = threading.Thread(
            target=self._serve, args=(config, sock, state), name="captaindata-emulator", daemon=True
        )
        self._thread.start()
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self._base_url = f"{'https' if self._ssl_certfile else 'http'}://{host}:{self.port}"
        self._wait_started()
        log.info("Captain Data emulator listening on %s", self._base_url)
        return self

    def _serve(self, config: Any, sock: socket.socket, state: Any) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                await self._server.serve(sockets=[sock])
            finally:
                await state.aclose()

        loop_factory = config.get_loop_factory() if hasattr(config, "get_loop_factory") else None
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(main())
        except BaseException as exc:  # reported by start() or stop()
            self._failure = exc
        finally:
            sock.close()

    def _wait_started(self) -> None:
        import time

        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError(f"the emulator failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start within {START_TIMEOUT} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (background runs and callbacks are cancelled). Safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                log.warning("The emulator did not stop within %s s", STOP_TIMEOUT)
        self._thread = None
        self.close()

    def __enter__(self) -> CaptainDataEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
