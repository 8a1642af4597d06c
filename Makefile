# The two commands: `make run` (demo on embedded defaults) and `make test` (the whole gate).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json

.PHONY: run test lint bench serve clean

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

test: $(STAMP) $(NODE_STAMP) lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/cold_start.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/storm.py

clean:
	rm -rf $(VENV) node_modules .amlevents .mypy_cache .ruff_cache
