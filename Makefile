# The few commands a newcomer needs. `make test` is the README's test command and what CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Exact versions of every dependency (dev extra included) that the suite last passed with: CI and
# the Docker image install with these constraints. `make lock` regenerates it.
LOCK := .ci/requirements.lock
LOCK_VENV := $(VENV)-lock
# `make dev PORT=8001` (and `make api PORT=8001`) when 8000 is taken.
PORT ?= 8000

.PHONY: dev test lint bench api worker migrate emulator lock

$(STAMP): pyproject.toml $(LOCK)
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required"; exit 1; }
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c $(LOCK) --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	@touch $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/restoration dev --port $(PORT)

api: $(STAMP)
	$(VENV)/bin/restoration api --port $(PORT)

test: $(STAMP)
	bash .ci/services.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) tests/bench/submit_latency.py
	$(PY) tests/bench/subscriptions.py
	$(PY) tests/bench/soak.py
	$(PY) tests/bench/scaling.py
	$(PY) tests/bench/utilisation.py
	$(PY) tests/bench/overhead.py --trace
	$(PY) tests/bench/fairness.py
	$(PY) tests/bench/ingest_memory.py
	$(PY) tests/bench/ingest_throughput.py
	$(PY) tests/bench/url_signing.py

migrate worker emulator: $(STAMP)
	$(VENV)/bin/restoration $@

# The newest versions pyproject.toml allows, resolved in a fresh venv and written down exactly.
# Run `make test` afterwards: the suite must pass with the new lock before it is committed.
lock:
	rm -rf $(LOCK_VENV)
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	{ echo "# Exact versions the test suite passed with (pip freeze of a venv with .[dev], Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())')): the pip constraints of CI and the Docker image. Regenerate with \`make lock\`."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)
