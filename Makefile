# Two commands do all the set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)

RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup setup-test run test lint format lock bench clean

setup: $(RUN_STAMP)  ## Runtime environment (idempotent: a no-op while uv.lock is unchanged).

setup-test: $(TEST_STAMP)  ## Runtime + test-only dependencies (pytest, ruff, torch, torchvision).

$(VENV)/bin/uv:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

# Install exactly what uv.lock pins; --frozen never resolves, --inexact keeps pip and uv.
$(RUN_STAMP): uv.lock pyproject.toml | $(VENV)/bin/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(VENV)/bin/uv sync --frozen --inexact --no-install-project --compile-bytecode --python $(PY)
	touch $@

# torch/torchvision (the numerical reference) are installed with pip, which takes the wheels this
# machine keeps on disk; every pin still comes from uv.lock and --no-deps resolves nothing.
$(TEST_STAMP): $(RUN_STAMP)
	$(VENV)/bin/uv export --frozen --extra test --no-hashes --no-emit-project --no-header --no-annotate -o $(VENV)/requirements-test.txt
	$(VENV)/bin/pip install --quiet --no-deps -r $(VENV)/requirements-test.txt
	$(PY) -m compileall -q -j 0 $(VENV)/lib/python3.11/site-packages/torch $(VENV)/lib/python3.11/site-packages/torchvision > /dev/null || true
	touch $@

lock:  ## Re-derive uv.lock from pyproject.toml (the only command that resolves).
	$(VENV)/bin/uv lock

run: setup  ## The project's main job on the embedded default data set.
	$(PY) local_runner.py

test: setup-test  ## The whole test suite.
	$(PY) -m pytest

lint: setup-test
	$(VENV)/bin/uv lock --check --offline
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup-test  ## Benchmarks (not tests): write JSON under benchmarks/results/.
	$(PY) -m benchmarks.run

clean:
	rm -rf outputs generated benchmarks/results
