"""``captaindata-emulator``: run the emulator until SIGINT or SIGTERM.

The first line of output is the base URL (scripts read it to find a free port's number);
the next lines give the key, the project uid and the Airflow connection to export, then the
v3 workflows it serves (uid, name, sample inputs) and sample inputs of a few v4 actions.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from airflow_provider_captaindata.emulator.settings import (
    DEFAULT_API_KEY,
    DEFAULT_CLI_PORT,
    DEFAULT_HOST,
    DEFAULT_PROJECT_UID,
    DEFAULT_SEED,
    setting_names,
)


def _setting(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captaindata-emulator",
        description="A local Captain Data API (v3 and v4) for tests and demos. Stop it with Ctrl-C.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_CLI_PORT, help="0 = any free port (default %(default)s)"
    )
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the API key it accepts")
    parser.add_argument("--project-uid", default=DEFAULT_PROJECT_UID, help="the v3 project (workspace) uid")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of uids and fake results")
    parser.add_argument("--rate-limit", type=float, help="live calls per second (429 above it)")
    parser.add_argument("--v3-running-seconds", type=float, help="how long a v3 run runs")
    parser.add_argument("--v4-running-seconds", type=float, help="how long a v4 async run runs")
    parser.add_argument(
        "--set",
        dest="settings",
        metavar="NAME=VALUE",
        action="append",
        type=_setting,
        default=[],
        help=f"any setting, VALUE as JSON; repeatable. Settings: {', '.join(setting_names())}",
    )
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this PEM certificate (with --ssl-keyfile)")
    parser.add_argument("--ssl-keyfile", help="the PEM private key of --ssl-certfile")
    parser.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        parser.error("--ssl-certfile and --ssl-keyfile go together: give both or neither")
    settings: dict[str, Any] = dict(args.settings)
    for flag, name in (
        ("rate_limit", "rate_limit_per_second"),
        ("v3_running_seconds", "v3_running_seconds"),
        ("v4_running_seconds", "v4_running_seconds"),
    ):
        if getattr(args, flag) is not None:
            settings[name] = getattr(args, flag)

    from airflow_provider_captaindata.emulator.server import CaptainDataEmulator

    emulator = CaptainDataEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        project_uid=args.project_uid,
        seed=args.seed,
        settings=settings,
        log_level=args.log_level,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    try:
        emulator.start()
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"captaindata-emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(emulator.base_url, flush=True)
    print(f"api key: {emulator.api_key}")
    print(f"project uid: {emulator.project_uid}")
    for name, value in emulator.airflow_env().items():
        print(f"export {name}='{value}'", flush=True)
    from airflow_provider_captaindata.emulator.samples import action_lines, workflow_lines

    print("v3 workflows (workflow_uid, name, sample inputs):")
    print("\n".join(workflow_lines(args.seed)))
    print("v4 actions (every action of the catalog; sample inputs of a few):")
    print("\n".join(action_lines()), flush=True)
    while not stop.wait(0.5):
        if not emulator.running:
            print("captaindata-emulator: the server stopped on its own", file=sys.stderr)
            return 1
    emulator.stop()
    return 0
