# The few commands a newcomer needs. `make test` is the README's test command and what CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench api worker migrate emulator

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required"; exit 1; }
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/restoration dev

test: $(STAMP)
	bash .ci/services.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) tests/bench/submit_latency.py
	$(PY) tests/bench/subscriptions.py
	$(PY) tests/bench/soak.py

migrate api worker emulator: $(STAMP)
	$(VENV)/bin/restoration $@
