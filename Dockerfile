# The image every Kubeflow Pipelines step runs in (`kubeflow_runner.py --image`).
# Installs the runtime section of requirements.lock, the same pins as local runs; with GPU=1 also
# the gpu section (TensorFlow's CUDA 12 / cuDNN 8.9 wheels; the host needs only the NVIDIA driver):
#   docker build -t video-swin-tfx .                          # CPU image
#   docker build --build-arg GPU=1 -t video-swin-tfx:gpu .    # GPU image (about 3 GB more)
# Two stages: `wheels` builds the pins the package index has only as source, with a compiler;
# the image itself has no compiler and installs wheels only.

# The locked pins with no wheel for CPython 3.11 on manylinux x86_64 (the index has only their
# sources). pyfarmhash 0.3.2 (tensorflow-data-validation needs < 0.4; only 0.5+ has wheels)
# compiles C++; crcmod builds its optional C extension (fast CRC checks); the
# others are pure Python. tests/test_dockerfile.py checks this list against the lock.
FROM python:3.11-slim AS wheels
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements.lock ./
# Built with the lock's own setuptools and wheel (no build isolation: nothing unpinned), --no-deps.
RUN python -m venv /opt/build \
 && grep -E '^(setuptools|wheel)==' requirements.lock > build-tools.txt \
 && /opt/build/bin/pip install --no-cache-dir -r build-tools.txt \
 && grep -E '^(crcmod|dill|docopt|google-apitools|hdfs|kfp|kfp-kubernetes|kfp-server-api|pyfarmhash|pyjsparser|rouge-score)==' requirements.lock > source-pins.txt \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels -r source-pins.txt

FROM python:3.11-slim

ARG GPU=0
# TensorFlow 2.16.2 finds the pip CUDA libraries by itself: its libraries' RUNPATH names
# ../nvidia/<lib>/lib and it looks for ptxas in ../nvidia/cuda_nvcc. Users of 2.16.1 needed
# LD_LIBRARY_PATH (https://github.com/tensorflow/tensorflow/issues/63362, #65842): set here as a
# fallback that costs nothing (the CPU image lacks these folders). `make setup` sets no such
# variable: there torch's CUDA 13 wheels share sonames with these and LD_LIBRARY_PATH wins.
ENV NVIDIA=/opt/venv/lib/python3.11/site-packages/nvidia
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$NVIDIA/cuda_nvcc/bin:$PATH \
    LD_LIBRARY_PATH=$NVIDIA/cublas/lib:$NVIDIA/cuda_cupti/lib:$NVIDIA/cuda_nvrtc/lib:$NVIDIA/cuda_runtime/lib:$NVIDIA/cudnn/lib:$NVIDIA/cufft/lib:$NVIDIA/curand/lib:$NVIDIA/cusolver/lib:$NVIDIA/cusparse/lib:$NVIDIA/nccl/lib:$NVIDIA/nvjitlink/lib \
    PYTHONPATH=/pipeline \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /pipeline
COPY requirements.lock ./
COPY --from=wheels /wheels /tmp/wheels
# --no-deps installs the locked pins without resolving; --no-build takes every pin as a wheel,
# from the index or from the wheels stage (a pin that would need building fails here, loudly);
# bytecode makes `import tensorflow` faster.
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir uv==0.13.9 \
 && sed '/^# gpu/,$d' requirements.lock > /tmp/requirements.txt \
 && if [ "$GPU" = 1 ]; then \
      sed -n '/^# gpu/,/^# test-only/{/^# test-only/!p}' requirements.lock >> /tmp/requirements.txt; \
    fi \
 && uv pip install --no-cache --no-deps --no-build --find-links /tmp/wheels --compile-bytecode -r /tmp/requirements.txt \
 && rm -r /tmp/requirements.txt /tmp/wheels
COPY data ./data
COPY components ./components
COPY model ./model
COPY pipeline ./pipeline
COPY serving ./serving
# The same image is Beam's SDK harness on Dataflow, Flink and Spark (`--sdk_container_image` or
# `--environment_type=DOCKER --environment_config`), so Beam workers have data/, PyAV and the pins:
# Beam's boot program from the SDK image of the locked Beam version. Kubeflow Pipelines sets each
# step's command, which overrides this entry point.
COPY --from=apache/beam_python3.11_sdk:2.59.0 /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
