# ReviewSum: `make run` serves, `make test` tests. Both set up .venv on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install run test unit lint format model-repository-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall when dependencies or the proto change: the client's stubs are generated at install.
$(STAMP): $(PY) pyproject.toml client/pyproject.toml client/hatch_build.py protos/reviewsum/v1/reviewsum.proto
	@echo "installing into $(VENV) (first time: about 2 minutes)"
	# The CPU build of torch; a plain `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e client -e '.[build,dev,bench]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m reviewsum_server.run $(RUN_ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest -q tests/unit tests/component $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf .cache .pytest_cache .ruff_cache client/src/reviewsum/v1/*_pb2*

# Load tests and benchmarks (loadtest/): `make loadtest` drives a running service (`make run` in another shell).
LOADTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: loadtest bench

loadtest: install
	$(PY) loadtest/run.py $(LOADTEST_ARGS)

bench: install
	$(PY) loadtest/bench.py $(BENCH_ARGS)
