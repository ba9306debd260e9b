#!/usr/bin/env bash
# Run the test suite on both Airflow lines at once (one core each), then show each log in turn.
#   scripts/test-both.sh [pytest args...]
set -uo pipefail
logs=$(mktemp -d)
.venv/bin/python -m pytest "$@" > "$logs/airflow-3.3.log" 2>&1 &
pid3=$!
.venv-2.11/bin/python -m pytest "$@" > "$logs/airflow-2.11.log" 2>&1 &
pid2=$!
wait $pid3; rc3=$?
wait $pid2; rc2=$?
echo "=== tests on Airflow 2.11 (exit $rc2) ==="; cat "$logs/airflow-2.11.log"
echo "=== tests on Airflow 3.3 (exit $rc3) ==="; cat "$logs/airflow-3.3.log"
rm -rf "$logs"
[ "$rc3" -eq 0 ] && [ "$rc2" -eq 0 ]
