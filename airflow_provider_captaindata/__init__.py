"""Apache Airflow provider for the Captain Data API (v3 workflows, v4 actions)."""

from __future__ import annotations

__version__ = "0.1.0"
