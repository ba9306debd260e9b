#!/usr/bin/env bash
# Run the test suite on every supported Airflow line, JOBS at a time (default: all at once), then
# show each log in turn and one summary line per Airflow line.
#   scripts/test-lines.sh [pytest args...]
#   LINES="3.3 2.11" JOBS=1 scripts/test-lines.sh -x     # a subset, one at a time
#   STACK_TEST=1 scripts/test-lines.sh                    # also `make stack-test`, queued last
# .venv is the 3.3 line; .venv-X.Y the others (make env-lines creates them all).
set -uo pipefail
cd "$(dirname "$0")/.."
lines=${LINES:-"3.3 3.2 3.1 3.0 2.11"}
# All at once by default: the suites mostly wait (emulated runs, polls, services starting). The
# five lines took 1,600 CPU seconds in all, so on 2 cores five at once finish well before two at
# a time (27 min under a load of 10 from other work, against 35 min for two at a time, quiet).
jobs=${JOBS:-5}
newest=3.3
oldest=2.11
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

venv_of() { if [ "$1" = 3.3 ]; then echo .venv; else echo ".venv-$1"; fi; }

run_line() {
  local line=$1; shift
  local start rc
  start=$(date +%s)
  # Tests that start real Airflow services run on the newest line only: they check our code
  # against the services' behaviour, and on 2 cores they would double CI's time per line.
  # Randomized explorations and the emulator's own tests (marked edge_lines) run on the newest
  # and the oldest line: the lines between run the same code in between.
  local select=()
  if [ "$line" = stack ]; then
    ${STACK_CMD:-make -s stack-test} > "$logs/$line.log" 2>&1
    rc=$?
    echo "$rc $(( $(date +%s) - start ))" > "$logs/$line.rc"
    return
  elif [ "$line" = "$oldest" ]; then
    select=(-m "not services")
  elif [ "$line" != "$newest" ]; then
    select=(-m "not services and not edge_lines")
  fi
  "$(venv_of "$line")/bin/python" -m pytest "${select[@]}" "$@" > "$logs/$line.log" 2>&1
  rc=$?
  echo "$rc $(( $(date +%s) - start ))" > "$logs/$line.rc"
}

for line in $lines; do
  [ -x "$(venv_of "$line")/bin/python" ] || { echo "test-lines: no $(venv_of "$line"): run make env-lines" >&2; exit 2; }
done
# The stack's fault scenarios, queued after the lines: they start when the first line is done,
# in the suites' tail (on 2 cores the suites alone keep both cores busy only at first).
[ "${STACK_TEST:-0}" = 1 ] && lines="$lines stack"
for line in $lines; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_line "$line" "$@" &
done
wait

status=0
summary=""
for line in $lines; do
  read -r rc seconds < "$logs/$line.rc"
  what="Airflow $line"
  [ "$line" = stack ] && what="stack scenarios"
  echo "=== $what (exit $rc, $seconds s) ==="
  cat "$logs/$line.log"
  summary+="$what ($seconds s): $(grep -E '(passed|failed|error)' "$logs/$line.log" | tail -1)"$'\n'
  [ "$rc" -eq 0 ] || status=1
done
printf '=== summary ===\n%s' "$summary"
exit $status
