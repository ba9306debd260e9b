#!/usr/bin/env bash
# Create or refresh a virtual environment from a committed lock file.
#   scripts/ensure-env.sh VENV_DIR LOCK_FILE
# Needs only Python (>= 3.11) and pip: uv is installed with pip when missing.
set -euo pipefail
venv=$1
lock=$2
python=${PYTHON:-python3}
export UV_PYTHON_DOWNLOADS=never

fail() { echo "ensure-env: $1" >&2; echo "  fix: $2" >&2; exit 1; }

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || fail "step 1/3: $python is missing or older than 3.11" "install Python 3.11+ or run with PYTHON=/path/to/python3.11"
interpreter=$("$python" -c 'import sys; print(sys.executable)')

if ! "$python" -m uv --version >/dev/null 2>&1; then
  echo "ensure-env: installing uv with pip" >&2
  "$python" -m pip install -q uv >&2 \
    || fail "step 2/3: 'pip install uv' failed" "check that PyPI is reachable, or install uv yourself"
fi
uv=("$python" -m uv)

stamp="$venv/.lock-sha"
want=$(cat "$lock" pyproject.toml | "$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
echo "ensure-env: setting up $venv from $lock" >&2
[ -x "$venv/bin/python" ] || "${uv[@]}" venv -q --python "$interpreter" "$venv" \
  || fail "step 3/3: could not create $venv" "remove $venv and retry; check disk space"
"${uv[@]}" pip sync -q --python "$venv/bin/python" "$lock" \
  || fail "step 3/3: installing $lock into $venv failed" "check that PyPI is reachable; 'make locks' if pyproject.toml changed"
echo "$want" > "$stamp"
