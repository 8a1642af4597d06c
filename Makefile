# The two commands: `make run` (demo on embedded defaults) and `make test` (the whole gate).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json

.PHONY: run test test-floor lint bench package serve clean mutate

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -e .
	touch $(STAMP)

# Azurite (the official Azure Storage emulator) for the Table ledger tests, from the lock file.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(VENV)/bin/amlevents demo

serve: $(STAMP)
	$(VENV)/bin/amlevents serve

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/zizmor --offline --quiet .github/workflows  # pinned actions, no persisted token

test: $(STAMP) $(NODE_STAMP) lint test-floor
	$(PY) -m pytest

# The oldest azure-functions requirements.txt allows (read from it, so the two cannot drift), in a
# venv of its own with only what the worker-delivery tier imports; that tier runs on it.
AZF_FLOOR := $(shell sed -n 's/^azure-functions>=\([0-9.]*\).*/\1/p' requirements.txt)
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed-$(AZF_FLOOR)

$(FLOOR_STAMP): requirements.txt requirements-dev.txt
	rm -rf $(FLOOR_VENV) && $(PYTHON) -m venv $(FLOOR_VENV)
	grep -E '^pytest(-timeout)?[<>=]' requirements-dev.txt > $(FLOOR_VENV)/requirements.txt
	$(FLOOR_VENV)/bin/python -m pip install -q --disable-pip-version-check \
		"azure-functions==$(AZF_FLOOR)" -r $(FLOOR_VENV)/requirements.txt
	touch $@

test-floor: $(FLOOR_STAMP)
	AZURE_FUNCTIONS_UNDER_TEST=$(AZF_FLOOR) $(FLOOR_VENV)/bin/python -m pytest -q \
		tests/functional/test_worker_delivery.py tests/functional/test_floor.py

# Mutation testing of handlers/ against the fast tiers (not part of the gate; see docs/testing.md).
# mutmut copies the tree to mutants/, runs the selected tests once to map them to functions, then
# each mutant against the tests that reach it. MUTATE_PATHS narrows it, e.g. handlers/notify;
# MUTATE_SAMPLE=N runs N of all the mutants drawn at random (MUTATE_SEED) and prints the score's
# 95 % confidence interval; MUTATE_JOBS=1 leaves the other core free (docs/testing.md).
MUTATE_PATHS ?= handlers
mutate: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check "mutmut>=3.8,<4"
	MUTATE_PATHS="$(MUTATE_PATHS)" $(PY) benchmarks/mutate.py

# Not part of the gate: each needs the machine to itself (docs/performance.md).
bench: $(STAMP)
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/sqlite_writers.py
	$(PY) benchmarks/warm_path.py
	$(PY) benchmarks/memory.py
	$(PY) benchmarks/storm.py

# What gets published (the CI/CD workflow ships it): the app's files and their bytecode. A package
# runs read-only, so without it every cold start compiles handlers/ again. Compile with the Python
# the app runs on (infra/main.bicep pythonVersion): bytecode is per version. Hash-checked, not
# time-stamped: unpacking a zip changes file times.
PUBLISH ?= build/publish
package:
	rm -rf $(PUBLISH) $(PUBLISH).zip
	mkdir -p $(PUBLISH)
	cp -R function_app.py host.json requirements.txt .funcignore handlers $(PUBLISH)/
	find $(PUBLISH) -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m compileall -q --invalidation-mode checked-hash $(PUBLISH)
	cd $(PUBLISH) && $(PYTHON) -m zipfile -c $(abspath $(PUBLISH)).zip .

clean:
	rm -rf $(VENV) $(FLOOR_VENV) node_modules .amlevents .mypy_cache .ruff_cache build
