# Every target sets itself up from a fresh clone: a venv in .venv, pinned Python packages,
# and Azurite from package-lock.json. Re-running is fast: stamps skip what has not changed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
PY_STAMP := $(VENV)/.perennial-installed
NODE_STAMP := node_modules/.perennial-installed
BENCH_STAMP := $(VENV)/.perennial-bench-installed
# pip prints a warning per extra local index; they are noise, not problems.
QUIET_PIP := grep -v "^WARNING: Location 'file:" || true
# pytest-xdist: two workers, whole files per worker (the e2e modules share a host across their tests).
# `make test PYTEST_WORKERS=` runs serially.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: help setup test lint typecheck unit demo bench clean

help:  ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(PY_STAMP) $(NODE_STAMP)  ## create .venv and install Python + Node dependencies

$(PY_STAMP): requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(BIN)/python || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing Python dependencies (pinned; torch==2.13.0 CPU)…"
	@$(PIP) install --quiet --upgrade pip 2>&1 | $(QUIET_PIP)
	@$(PIP) install --quiet -r requirements.txt -r requirements-cli.txt -r requirements-dev.txt 2>&1 | $(QUIET_PIP)
	@$(PIP) install --quiet --no-deps --no-build-isolation -e . 2>&1 | $(QUIET_PIP)
	@$(BIN)/python -c "import torch, azure.functions, azure.durable_functions" || { echo "Python dependencies did not install"; exit 1; }
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js 18+ (Azurite runs on it)"; exit 1; }
	@echo "installing Azurite (npm ci)…"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(PY_STAMP)  ## ruff
	$(BIN)/ruff check .

typecheck: $(PY_STAMP)  ## mypy --strict on the app code
	$(BIN)/mypy --strict shared functions function_app.py perennial_cli devhost

unit: $(PY_STAMP) $(NODE_STAMP)  ## pytest only
	$(BIN)/pytest $(PYTEST_WORKERS)

test: $(PY_STAMP) $(NODE_STAMP)  ## ruff, mypy --strict and the whole pytest suite
	$(BIN)/ruff check .
	$(BIN)/mypy --strict shared functions function_app.py perennial_cli devhost
	$(BIN)/pytest $(PYTEST_WORKERS)

demo: $(PY_STAMP) $(NODE_STAMP)  ## run the local end-to-end scenario
	$(BIN)/perennial demo

$(BENCH_STAMP): $(PY_STAMP) benchmarks/requirements.txt
	@echo "installing benchmark peers (benchmarks/requirements.txt)…"
	@$(PIP) install --quiet -r benchmarks/requirements.txt 2>&1 | $(QUIET_PIP)
	@touch $@

bench: $(BENCH_STAMP) $(NODE_STAMP)  ## run the benchmarks against their named peers
	$(BIN)/python -m benchmarks

clean:  ## remove local state (.perennial); keeps .venv and node_modules
	rm -rf .perennial .pytest_cache .mypy_cache .ruff_cache
