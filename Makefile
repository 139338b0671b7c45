# Quick start: `make run` (daemon on the embedded simulator, paper trading, no keys)
#              `make test` (lint + the whole test suite). Both bootstrap .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

LOCK    = $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
          --no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test lint licences unit bench lock clean

# Installs exactly what requirements/dev.lock pins (hash-checked), then perpbot itself, editable.
$(STAMP): pyproject.toml requirements/dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/perpbot run

lint: $(STAMP)
	$(BIN)/ruff check bot tests
	$(BIN)/hadolint Dockerfile

# Every locked dependency with its version and licence; fails on copyleft in the runtime set.
licences: $(STAMP)
	$(BIN)/python tools/licence_report.py

test: lint licences
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# One table of the headline figures (each script in tests/bench/ also runs alone, with options).
bench: $(STAMP)
	$(BIN)/python tests/bench/table.py $(BENCH_ARGS)

# Re-resolve the locks after changing dependencies in pyproject.toml (needs the package registry).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(LOCK) -o requirements/runtime.lock pyproject.toml
	$(LOCK) -o requirements/build.lock requirements/build.in
	$(LOCK) --extra dev -o requirements/dev.lock pyproject.toml requirements/editable.in

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
