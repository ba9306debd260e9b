"""``captaindata-callback-receiver``: the callback receiver as its own process (uvicorn).

For Airflow 2.11, or for teams that expose a separate endpoint rather than the Airflow API
server. Prints its base URL on stdout, its only line there (logs go to stderr; ``--port 0``
picks a free port), then serves until SIGINT or SIGTERM and exits 0.

    CAPTAINDATA_CALLBACK_SECRET=... captaindata-callback-receiver --host 0.0.0.0 --port 8710 \\
        --storage s3://bucket/captaindata-callbacks
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType

from airflow_provider_captaindata.client.settings import DEFAULT_CONN_ID

DEFAULT_PORT = 8710
DEFAULT_SECRET_ENV = "CAPTAINDATA_CALLBACK_SECRET"

log = logging.getLogger("airflow_provider_captaindata.callbacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captaindata-callback-receiver",
        description="Receive Captain Data v4 async result pages (callbacks) and store them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free port)"
    )
    parser.add_argument(
        "--storage",
        help="where pages are stored, an ObjectStoragePath URI (file:///path, s3://bucket/prefix, ...); "
        "default: the connection's callback_storage",
    )
    parser.add_argument(
        "--secret-env",
        default=DEFAULT_SECRET_ENV,
        metavar="VAR",
        help=f"environment variable holding the callback secret (default {DEFAULT_SECRET_ENV}); "
        "when unset, the connection's callback_secret is used",
    )
    parser.add_argument(
        "--conn-id",
        default=DEFAULT_CONN_ID,
        help=f"Airflow connection read for what is not given here (default {DEFAULT_CONN_ID})",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=10 * 1024 * 1024, help="larger callbacks get 413"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"--port must be 0 to 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.max_body_bytes <= 0:
        print("--max-body-bytes must be positive", file=sys.stderr)
        return 2
    # stdout carries the base URL and nothing else: whatever else writes there (Airflow 3's
    # structlog does, when an s3:// storage loads Airflow) goes to stderr instead.
    url_out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    secret = os.environ.get(args.secret_env) or None

    import uvicorn

    from airflow_provider_captaindata.callbacks.app import create_app
    from airflow_provider_captaindata.callbacks.storage import CallbackStore

    if args.storage:
        try:
            CallbackStore(args.storage)  # a bad URI fails here, not on the first callback
        except Exception as exc:
            print(f"--storage {args.storage!r}: {exc}", file=sys.stderr)
            return 2
    if secret is None:
        log.info("%s is not set: the secret comes from connection %r", args.secret_env, args.conn_id)

    app = create_app(
        secret=secret, storage=args.storage, conn_id=args.conn_id, max_body_bytes=args.max_body_bytes
    )
    # Bind first so that port 0 resolves to a real port we can print before serving.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.listen(2048)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"http://{shown}:{port}", file=url_out, flush=True)

    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        log_config=None,  # keep the logging set up above
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
    server = _server_class()(config)
    # On SIGINT or SIGTERM uvicorn stops accepting, finishes the requests in flight (a page
    # being written is still acknowledged) and returns.
    server.run(sockets=[sock])
    log.info("Callback receiver stopped")
    return 0


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # uvicorn records the signal and raises it again once shut down, so the process ends
            # "killed by SIGTERM"; a receiver stopped on purpose exits 0 instead. A second
            # SIGINT still forces the exit.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server


if __name__ == "__main__":
    sys.exit(main())
