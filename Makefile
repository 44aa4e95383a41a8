# `make demo` and `make test` work on a fresh machine with only Python 3.11:
# each creates .venv if missing and installs the package with its dependencies first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bfsdata demo --workspace demo-workspace

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check bfsdata tests benchmarks
	$(BIN)/ruff format --check bfsdata tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format bfsdata tests benchmarks
	$(BIN)/ruff check --fix bfsdata tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/patch.py

clean:
	rm -rf demo-workspace bench-out .pytest_cache
