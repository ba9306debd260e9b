"""The Captain Data API client: transport, retry policy, settings, versions, models, catalog.

Nothing under this package imports Airflow (``tests/test_layers.py`` fails if it does): a
plain script can use it, and the Airflow integration (hooks, operators, sensor, triggers) is
built on top of it.
"""
