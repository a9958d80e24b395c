# Two commands do all the set-up: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)

RUN_STAMP := $(VENV)/.installed-run
GPU_STAMP := $(VENV)/.installed-gpu
TEST_STAMP := $(VENV)/.installed-test

# GPU=1 also installs the lock's gpu section (TensorFlow's CUDA wheels), GPU=0 does not; by default
# 1 where `nvidia-smi -L` lists a GPU. (No grep -q: with pipefail, an early exit would SIGPIPE.)
GPU ?= $(shell nvidia-smi -L 2>/dev/null | grep '^GPU ' > /dev/null && echo 1 || echo 0)
SETUP_STAMPS := $(RUN_STAMP) $(if $(filter 1,$(GPU)),$(GPU_STAMP))

.PHONY: setup setup-test run test lint format lock bench bench-stages clean

setup: $(SETUP_STAMPS)  ## Runtime environment (+ CUDA wheels with a GPU); a no-op while requirements.lock is unchanged.

setup-test: $(TEST_STAMP)  ## Runtime + test-only pins (pytest, ruff, torch, torchvision).

# pyfarmhash (the lock's) is compiled from C++ sources: without a compiler, say which package to
# install before anything is installed (tools/check_compiler.sh).
$(UV):
	tools/check_compiler.sh $(PYTHON) requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

# The lock's runtime section, exactly: --no-deps installs the pins and resolves nothing.
$(RUN_STAMP): requirements.lock | $(UV)
	tools/check_compiler.sh $(PYTHON) requirements.lock $(PY)
	sed '/^# gpu/,$$d' requirements.lock > $(VENV)/requirements-run.txt
	$(UV) pip install --python $(PY) --quiet --no-deps --compile-bytecode -r $(VENV)/requirements-run.txt
	touch $@

# The gpu section (nvidia-*-cu12 wheels, about 3 GB): TensorFlow finds them in site-packages by
# itself (its libraries' RUNPATH names ../nvidia/*/lib, and it looks for ptxas in ../nvidia/cuda_nvcc).
# Its own stamp, so a CPU venv that later gets GPU=1 installs them; rebuilt after the runtime one.
$(GPU_STAMP): $(RUN_STAMP)
	sed -n '/^# gpu/,/^# test-only/{/^# test-only/!p}' requirements.lock > $(VENV)/requirements-gpu.txt
	$(UV) pip install --python $(PY) --quiet --no-deps --compile-bytecode -r $(VENV)/requirements-gpu.txt
	touch $@

# The test-only section goes through pip, which takes the torch/torchvision wheels this machine
# keeps on disk (uv would download 3 GB); the pins still come from the lock, --no-deps as above.
$(TEST_STAMP): $(SETUP_STAMPS)
	sed -n '/^# test-only/,$$p' requirements.lock > $(VENV)/requirements-test.txt
	$(VENV)/bin/pip install --quiet --no-deps -r $(VENV)/requirements-test.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(PY) -m pip check > /dev/null || { $(PY) -m pip check; exit 1; }
	$(PY) -m compileall -q -j 0 $(VENV)/lib/python3.11/site-packages > /dev/null || true
	touch $@

lock:  ## Re-derive requirements.lock from pyproject.toml: the only command that resolves.
	UV=$(UV) tools/lock.sh

run: setup  ## The main job: train, evaluate, bless and push on the embedded set (--verbose: all logs).
	$(PY) local_runner.py

# One pytest-xdist worker per core (at most 4: each holds its own TensorFlow and shared runs);
# tests that share a pipeline run go to one worker, the slow ones first (tests/conftest.py).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: setup-test  ## The whole test suite.
	$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadgroup --no-loadscope-reorder

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup-test  ## Benchmarks (not tests): JSON under benchmarks/results/.
	$(PY) -m benchmarks.run

# The whole pipeline on generated UCF101-shaped data (505 and 2,020 videos, kept under
# /tmp/realsize): time, memory and bytes per stage, the README's sizing table. About an hour
# on 2 cores.
bench-stages: setup-test  ## Per-stage pipeline benchmark at real size (benchmarks/results/pipeline_stages.json).
	$(PY) -m benchmarks.pipeline_stages

clean:
	rm -rf outputs generated benchmarks/results
