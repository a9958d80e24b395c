# The image every Kubeflow Pipelines step runs in (`kubeflow_runner.py --image`).
# Installs the runtime section of requirements.lock, the same pins as local runs; with GPU=1 also
# the gpu section (TensorFlow's CUDA 12 / cuDNN 8.9 wheels; the host needs only the NVIDIA driver):
#   docker build -t video-swin-tfx .                          # CPU image
#   docker build --build-arg GPU=1 -t video-swin-tfx:gpu .    # GPU image (about 3 GB more)
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
# --no-deps installs the locked pins without resolving; bytecode makes `import tensorflow` faster.
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir uv==0.13.9 \
 && sed '/^# gpu/,$d' requirements.lock > /tmp/requirements.txt \
 && if [ "$GPU" = 1 ]; then \
      sed -n '/^# gpu/,/^# test-only/{/^# test-only/!p}' requirements.lock >> /tmp/requirements.txt; \
    fi \
 && uv pip install --no-cache --no-deps --compile-bytecode -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
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
