"""The Trainer's distribution: which tf.distribute strategy, which replica is the chief, and a
clear failure when the GPUs asked for are not there.

MultiWorkerMirroredStrategy when TF_CONFIG names several tasks (a TFJob, a Vertex AI custom job),
else MirroredStrategy over the local devices.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging


def require_gpus(count: int) -> None:
    """Fails, saying why, unless TensorFlow sees at least `count` GPUs (0: no requirement).

    A Trainer that asked for GPUs and silently trained on the CPU would take weeks; this stops it
    in its first seconds instead.
    """
    found = tf.config.list_physical_devices("GPU")
    if len(found) >= count:
        return
    build = tf.sysconfig.get_build_info()
    raise RuntimeError(
        f"{count} GPU(s) requested (TrainOptions.gpus / --gpus) but TensorFlow sees "
        f"{len(found)}: {[d.name for d in found]}. TensorFlow {tf.__version__} was built for "
        f"CUDA {build.get('cuda_version', '?')} / cuDNN {build.get('cudnn_version', '?')} and "
        "loads them from the nvidia-*-cu12 wheels: install them with `make setup GPU=1`, or build "
        "the image with `docker build --build-arg GPU=1`. Check also that `nvidia-smi` lists the "
        "GPUs and that the pod requests them (nvidia.com/gpu)."
    )


def make_strategy(name: str = "auto", gpus: int = 0) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names several tasks, else MirroredStrategy
    over the local devices (all GPUs, or the CPU). gpus: how many GPUs must be visible."""
    require_gpus(gpus)
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    tasks = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    if name == "multi_worker" or (name == "auto" and tasks > 1):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name in ("auto", "mirrored"):
        strategy = tf.distribute.MirroredStrategy()
    else:
        raise ValueError(f"unknown strategy {name!r}: auto, mirrored or multi_worker")
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type in ("CPU", "GPU")]
    logging.info(
        "%s with %d replica(s); local devices: %s",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        ", ".join(devices),
    )
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
