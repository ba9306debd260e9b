"""pytest plugin (entry point ``pytest11``): the ``captaindata_emulator`` fixture.

One emulator per test session, started the first time a test asks for it; before each test
it is reset and ``AIRFLOW_CONN_CAPTAINDATA_DEFAULT`` points at it. Set
``CAPTAINDATA_EMULATOR_URL`` to use an emulator that is already running instead.

This module is imported by every pytest run in an environment where the provider is
installed, so it imports nothing heavy until the fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_captaindata.emulator.client import EmulatorClient

EXTERNAL_URL_VARIABLE = "CAPTAINDATA_EMULATOR_URL"


@pytest.fixture(scope="session")
def captaindata_emulator_session() -> Iterator[EmulatorClient]:
    """The session's emulator: started here, or the one at ``$CAPTAINDATA_EMULATOR_URL``."""
    external = os.environ.get(EXTERNAL_URL_VARIABLE)
    if external:
        from airflow_provider_captaindata.emulator.client import EmulatorClient

        client = EmulatorClient(external)
        yield client
        client.close()
        return
    from airflow_provider_captaindata.emulator.server import CaptainDataEmulator

    emulator = CaptainDataEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def captaindata_emulator(
    captaindata_emulator_session: EmulatorClient, monkeypatch: pytest.MonkeyPatch
) -> EmulatorClient:
    """The emulator, reset, with ``AIRFLOW_CONN_CAPTAINDATA_DEFAULT`` pointing at it."""
    captaindata_emulator_session.reset()
    for name, value in captaindata_emulator_session.airflow_env().items():
        monkeypatch.setenv(name, value)
    return captaindata_emulator_session
