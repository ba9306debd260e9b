"""``python -m airflow_provider_captaindata.emulator``: the same as ``captaindata-emulator``."""

from __future__ import annotations

import sys

from airflow_provider_captaindata.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
