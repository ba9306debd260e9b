# airflow-provider-captaindata: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
VENV_211 := .venv-2.11
LOCK := requirements/airflow-3.3.lock
LOCK_211 := requirements/airflow-2.11.lock
# The benchmarks' own environment: the 3.3 line plus the baselines' packages (dbt Cloud, aiohttp).
VENV_BENCH := .venv-bench
LOCK_BENCH := requirements/bench.lock
PY := $(VENV)/bin/python
PY_211 := $(VENV_211)/bin/python
PYTEST_ARGS ?=
# Every supported Airflow line has a lock; .venv is 3.3 (tests, lint, docs), .venv-X.Y the others.
# `make test LINES="3.3 2.11"` runs a subset.
ALL_LINES := 3.3 3.2 3.1 3.0 2.11
LINES ?= $(ALL_LINES)
ENVS := $(addprefix env-,$(filter-out 3.3,$(ALL_LINES)))
export PYTHON
export UV_PYTHON_DOWNLOADS := never

.PHONY: help env env-lines $(ENVS) env-bench test soak lint test-airflow3 test-airflow2 demo stack stack-test stack-tools docs ui-check bench locks dist wheel-check clean

help:
	@echo "make demo   - set up and run the example DAGs on real Airflow services against the emulator"
	@echo "make test   - lint, type-check and run the tests on every supported Airflow line (LINES=...)"
	@echo "make soak   - thousands of randomized invariant scenarios (SOAK_SCENARIOS, SOAK_SECONDS, SOAK_SEED)"
	@echo "make stack  - the example DAGs on a production-like stack (Celery, Redis, PostgreSQL, S3, 2 API servers, 2 triggerers, TLS)"
	@echo "make stack-test - the stack's fault scenarios (tests/test_stack.py)"
	@echo "make docs   - build the documentation (warnings are errors)"
	@echo "make ui-check - check the connection form and extra link in the real UI (headless chromium)"
	@echo "make bench  - run the benchmarks"
	@echo "make locks  - recompile the lock files after changing dependencies"
	@echo "make dist   - build the wheel and sdist into dist/ and check them with twine"
	@echo "make wheel-check - install the built wheel as a user would (Airflow 3.3.2 from the index) and run an example DAG"

env:
	@scripts/ensure-env.sh $(VENV) $(LOCK)

# One venv per other line: env-2.11, env-3.0, env-3.1, env-3.2.
$(ENVS): env-%:
	@scripts/ensure-env.sh .venv-$* requirements/airflow-$*.lock

env-lines: env $(addprefix env-,$(filter-out 3.3,$(LINES)))

# Every line's suite, all at once (JOBS=2 for two at a time); each log is shown whole afterwards.
test: lint env-lines
	LINES="$(LINES)" scripts/test-lines.sh $(PYTEST_ARGS)

# The invariant harness (tests/invariants, docs/guarantees.md) far past make test's fixed budget:
# SOAK_SCENARIOS scenarios from SOAK_SEED (default: the clock) within SOAK_SECONDS; it says how
# many it ran, and a failure prints its seed and a replay command. SOAK_LINE=2.11 for that line.
SOAK_SCENARIOS ?= 3000
SOAK_SECONDS ?= 21600
SOAK_SEED ?= $(shell date +%s)
SOAK_LINE ?= 3.3
soak: env $(if $(filter 3.3,$(SOAK_LINE)),,env-$(SOAK_LINE))
	CAPTAINDATA_HARNESS_SCENARIOS=$(SOAK_SCENARIOS) CAPTAINDATA_HARNESS_SECONDS=$(SOAK_SECONDS) \
	  CAPTAINDATA_HARNESS_SEED=$(SOAK_SEED) \
	  $(if $(filter 3.3,$(SOAK_LINE)),$(PY),.venv-$(SOAK_LINE)/bin/python) -m pytest tests/invariants \
	  -p no:randomly -x -q --timeout 0 -s

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-airflow3: env
	$(PY) -m pytest $(PYTEST_ARGS)

test-airflow2: env-2.11
	$(PY_211) -m pytest $(PYTEST_ARGS)

demo: env
	$(PY) scripts/demo.py $(if $(KEEP),--keep,)

# The stack's system packages, installed as root when missing: Debian's redis-server (the Celery
# broker) and postgresql (the metadata database; its binaries are not on PATH, hence the glob).
stack-tools:
	@command -v redis-server >/dev/null 2>&1 || { echo "make: installing Debian's redis-server for the stack"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "make: installing Debian's postgresql for the stack"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

stack: env stack-tools
	$(PY) scripts/stack.py $(if $(KEEP),--keep,)

stack-test: env stack-tools
	CAPTAINDATA_STACK_TEST=1 $(PY) -m pytest tests/test_stack.py -p no:randomly -v -s --timeout 1500 --durations=0

docs: env
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# The connection form and the extra link in the real Airflow 3 UI (needs Debian's chromium).
ui-check: env
	$(PY) scripts/ui_check.py

env-bench:
	@scripts/ensure-env.sh $(VENV_BENCH) $(LOCK_BENCH)

bench: env-bench
	$(VENV_BENCH)/bin/python -m pytest tests/benchmarks -p no:randomly -s -q --timeout 2400 -o testpaths=tests/benchmarks

locks:
	for line in $(LINES); do \
	  $(PYTHON) -m uv pip compile -q --python-version 3.11 --universal requirements/airflow-$$line.in -o requirements/airflow-$$line.lock || exit 1; \
	done
	$(PYTHON) -m uv pip compile -q --python-version 3.11 --universal requirements/bench.in -o $(LOCK_BENCH)

# The release artefacts, built in an isolated environment (hatchling) and checked as PyPI would.
dist: env
	rm -rf dist
	$(PYTHON) -m uv build -q --out-dir dist
	$(VENV)/bin/twine check --strict dist/*

wheel-check: dist
	scripts/wheel-check.sh

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(filter-out 3.3,$(ALL_LINES))) $(VENV_BENCH) site dist .demo .bench .stack .wheel-check
