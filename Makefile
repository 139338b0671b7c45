# Quick start: `make run` (daemon on the embedded simulator, paper trading, no keys)
#              `make test` (lint + the whole test suite). Both bootstrap .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

LOCK    = $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
          --no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test lint licences unit bench fuzz soak lock clean

SOAK_SECS    ?= 1800
ATHERIS_RUNS ?= 500000

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
	$(BIN)/mypy bot
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

# The fuzzers at 100x the budget `make test` gives them, then atheris (libFuzzer, coverage-guided)
# on the dYdX frame parser if it installs (optional extra `fuzz`); crashes go to .hypothesis/atheris/.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz-long $(BIN)/pytest tests/fuzz -q -p no:cacheprovider
	@$(BIN)/python -c 'import atheris' 2>/dev/null || $(BIN)/python -m pip install --quiet 'atheris>=2.3,<4' \
		|| echo "atheris did not install: skipping the libFuzzer run"
	@if $(BIN)/python -c 'import atheris' 2>/dev/null; then mkdir -p .hypothesis/atheris && \
		$(BIN)/python tests/fuzz/atheris_dydx.py -atheris_runs=$(ATHERIS_RUNS) -artifact_prefix=.hypothesis/atheris/; fi

# The daemon on the protocol simulator for SOAK_SECS under scenario churn; fails on growth (tests/soak/soak.py).
soak: $(STAMP)
	$(BIN)/python tests/soak/soak.py $(SOAK_SECS)

# Re-resolve the locks after changing dependencies in pyproject.toml (needs the package registry).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(LOCK) -o requirements/runtime.lock pyproject.toml
	$(LOCK) -o requirements/build.lock requirements/build.in
	$(LOCK) --extra dev -o requirements/dev.lock pyproject.toml requirements/editable.in
	cp requirements/dev.lock requirements/research.lock  # seeded with the dev pins: one version everywhere
	$(LOCK) --extra research -o requirements/research.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
