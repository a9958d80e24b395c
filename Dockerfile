# The image every Kubeflow Pipelines step runs in (`kubeflow_runner.py --image`).
# Installs the runtime section of requirements.lock, the same pins as local runs.
FROM python:3.11-slim

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/pipeline \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /pipeline
COPY requirements.lock ./
# --no-deps installs the locked pins without resolving; bytecode makes `import tensorflow` faster.
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir uv==0.13.9 \
 && sed '/^# test-only/,$d' requirements.lock > /tmp/requirements-run.txt \
 && uv pip install --no-deps --compile-bytecode -r /tmp/requirements-run.txt
COPY data ./data
COPY components ./components
COPY model ./model
COPY pipeline ./pipeline
COPY serving ./serving
