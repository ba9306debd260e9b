#!/usr/bin/env bash
# The built wheel as a user gets it (`make wheel-check`, and CI): a fresh virtual environment
# with only apache-airflow==3.3.2 and the wheel with its user extras, resolved from the index
# (not this repository's locks); then `airflow providers list`, every public module imported,
# and one example DAG run with `airflow dags test` against the emulator's command line.
#   scripts/wheel-check.sh [WHEEL]     (default: the wheel in dist/, built by `make dist`)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export UV_PYTHON_DOWNLOADS=never
start=$(date +%s)
work=$PWD/.wheel-check
fail() { echo "wheel-check: $1" >&2; exit 1; }
step() { echo "wheel-check: $1 ($(( $(date +%s) - start )) s)"; }

wheel=${1:-$(ls dist/airflow_provider_captaindata-*-py3-none-any.whl 2>/dev/null | tail -1)}
[ -f "$wheel" ] || fail "no wheel in dist/: run 'make dist' first"
rm -rf "$work"
mkdir -p "$work/dags"
"$python" -m uv venv -q --python "$("$python" -c 'import sys; print(sys.executable)')" "$work/venv"
bin=$work/venv/bin
# The extras a user installs (not lint, docs, stack: those are the repository's own).
"$python" -m uv pip install -q --python "$bin/python" "apache-airflow==3.3.2" \
  "$(realpath "$wheel")[emulator,s3,openlineage,test]" || fail "installing $wheel failed"
step "installed $(basename "$wheel") with apache-airflow==3.3.2 from the index"

export AIRFLOW_HOME=$work/airflow-home
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$work/dags
"$bin/airflow" db migrate >/dev/null 2>&1 || fail "airflow db migrate failed"
"$bin/airflow" providers list | grep -q "airflow-provider-captaindata" \
  || fail "'airflow providers list' does not list airflow-provider-captaindata"
step "airflow providers list shows the provider"

(cd "$work" && "$bin/python" - <<'EOF') || fail "a public module does not import from the installed wheel"
import importlib
import pkgutil

import airflow_provider_captaindata as package

assert "site-packages" in package.__file__, package.__file__  # the wheel, not the clone
names = [
    info.name
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not any(part.startswith("_") for part in info.name.split("."))
]
for name in names:
    importlib.import_module(name)
print(f"wheel-check: {len(names)} public modules import")
EOF

# One example DAG with `airflow dags test` against the emulator CLI (its runs last a second).
"$bin/captaindata-emulator" --port 0 --v3-running-seconds 1 >"$work/emulator.out" 2>"$work/emulator.err" &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^export AIRFLOW_CONN_' "$work/emulator.out" && break; sleep 0.1; done
grep -q '^export AIRFLOW_CONN_' "$work/emulator.out" || fail "the emulator did not start: $(cat "$work/emulator.err")"
eval "$(grep '^export AIRFLOW_CONN_' "$work/emulator.out")"
cp dags_examples/captaindata_workflow_xcom.py "$work/dags/"
CAPTAINDATA_EXAMPLE_POLL_SECONDS=0.5 "$bin/airflow" dags test captaindata_workflow_xcom >"$work/dags-test.log" 2>&1 \
  || { tail -40 "$work/dags-test.log"; fail "airflow dags test captaindata_workflow_xcom failed"; }
grep -Eq "DagRun Finished: dag_id=captaindata_workflow_xcom,.* state=success" "$work/dags-test.log" \
  || { tail -40 "$work/dags-test.log"; fail "the DAG run did not succeed (log: $work/dags-test.log)"; }
step "airflow dags test captaindata_workflow_xcom succeeded against the emulator"
echo "wheel-check: passed in $(( $(date +%s) - start )) s"
