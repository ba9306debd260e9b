"""A local Captain Data API emulator (v3 workflows and v4 actions) with fault injection.

::

    from airflow_provider_captaindata.emulator import CaptainDataEmulator

    with CaptainDataEmulator() as emu:  # any free port on 127.0.0.1
        emu.base_url  # http://127.0.0.1:PORT, v3 under /v3, v4 under /v4
        emu.add_fault("GET", "/v3/jobs/*", status=503, times=2)

``EmulatorClient(base_url)`` drives one started elsewhere (``captaindata-emulator``). See
docs/emulator.md. The server classes load on first use, so importing this package (as the
pytest plugin does) needs neither Starlette nor uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_captaindata.emulator.client import EmulatorClient, EmulatorControlError
    from airflow_provider_captaindata.emulator.server import CaptainDataEmulator

__all__ = ["CaptainDataEmulator", "EmulatorClient", "EmulatorControlError"]

_HOMES = {
    "CaptainDataEmulator": "airflow_provider_captaindata.emulator.server",
    "EmulatorClient": "airflow_provider_captaindata.emulator.client",
    "EmulatorControlError": "airflow_provider_captaindata.emulator.client",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
