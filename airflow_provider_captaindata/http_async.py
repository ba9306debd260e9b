"""Deprecated: moved to :mod:`airflow_provider_captaindata.client.transport_async`.

This old path warns (DeprecationWarning) and goes in the next release.
"""

from __future__ import annotations

from airflow_provider_captaindata._moved import alias

alias(__name__)
