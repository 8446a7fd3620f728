# The two commands: `make run` (the whole dev stack) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt bench clean browser bytecode

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# SCHEDULE=real keeps the facilities' real cutoffs; by default they come every 2 minutes.
run: $(STAMP) bytecode
	PRINTFLOW_DEV_SCHEDULE=$(or $(SCHEDULE),fast) $(BIN)/python -m devstack

# Bytecode as the Docker image has it: where PYTHONDONTWRITEBYTECODE is set, the workflow sandbox
# would otherwise compile workflows/orders.py for every workflow it builds (docs/performance.md).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q *.py activities api contracts db domain integrations runtime workflows simulator devstack bench

# Chromium for the browser tests comes from Debian; we install it when we are root and it is missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "browser tests will be skipped: could not install Debian's chromium"; \
	  else echo "browser tests will be skipped: run 'sudo apt-get install chromium' to enable them"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) browser lint bytecode
	$(BIN)/python -m tests.run

# `make bench` measures printflow against a bare Temporal baseline (docs/performance.md);
# options go in BENCH, e.g. `make bench BENCH=--scale` (10,000 orders waiting) or BENCH=--help.
bench: $(STAMP) bytecode
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
