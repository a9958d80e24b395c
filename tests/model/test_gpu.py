"""The Trainer really uses the GPU: TensorFlow finds its CUDA wheels, the strategy spans the GPUs,
and a training step of the tiny model runs there in float32 and mixed_bfloat16.

Skipped where `nvidia-smi -L` lists no GPU. The checks run in one child process, as a Trainer
does: this pytest process has imported torch (tests/model/conftest.py), whose CUDA 13 wheels
load libraries under the same sonames as TensorFlow's CUDA 12 ones (libcusparse.so.12,
libcurand.so.10, libnccl.so.2), so TensorFlow here would not show what a Trainer gets.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from model import keras_env


def _nvidia_gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]


pytestmark = pytest.mark.skipif(not _nvidia_gpus(), reason="no NVIDIA GPU (nvidia-smi -L)")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRECISIONS = ("float32", "mixed_bfloat16")

_CHILD = """
import json, sys, traceback
import numpy as np
import tensorflow as tf
from model import train
from model.strategy import make_strategy
from tests.helpers import tiny_train_options

results = {}

def check(name, fn):
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"error": traceback.format_exc()}

def matmul():
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    with tf.device("/GPU:0"):
        c = tf.matmul(tf.constant(a), tf.constant(a))
    reference = a.astype(np.float64) @ a
    return {"device": c.device, "relative_error": float(np.abs(c.numpy() - reference).max()
                                                          / np.abs(reference).max())}

def strategy():
    s = make_strategy("auto")
    return {"replicas": s.num_replicas_in_sync, "devices": list(s.extended.worker_devices)}

def train_step(precision):
    s = make_strategy("auto")
    options = tiny_train_options(precision=precision, warmup_epochs=0.0)
    batch = options.batch_size * s.num_replicas_in_sync
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (batch, *options.clip_shape), dtype=np.uint8)
    labels = np.eye(6, dtype=np.float32)[rng.integers(0, 6, batch)]
    with s.scope():
        model = train.build_model(options, 6, steps_per_epoch=10)
    logs = model.train_on_batch(clips, labels, return_dict=True)
    return {
        "loss": float(logs["loss"]),
        "iterations": int(model.optimizer.iterations.numpy()),
        "variable_devices": sorted({v.device for v in model.trainable_variables}),
        "compute_dtypes": sorted({l.compute_dtype for l in model.classifier.submodules
                                  if hasattr(l, "compute_dtype")}),
    }

results["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
results["build"] = {k: str(v) for k, v in tf.sysconfig.get_build_info().items()
                    if k in ("cuda_version", "cudnn_version")}
if results["gpus"]:
    check("matmul", matmul)
    check("strategy", strategy)
    for precision in sys.argv[1:]:
        check(precision, lambda: train_step(precision))
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def child():
    """What TensorFlow does with the GPU in a fresh process (TF_CONFIG unset: one worker)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=REPO, **keras_env.ENV)
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, *PRECISIONS],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [x for x in run.stdout.splitlines() if x.startswith("RESULTS ")]
    assert run.returncode == 0 and lines, run.stderr[-4000:]
    return json.loads(lines[-1][len("RESULTS ") :])


def _found(child, name):
    """The child's result `name`; a failure says why when TensorFlow found no GPU at all."""
    assert child["gpus"], (
        f"nvidia-smi lists {_nvidia_gpus()} but TensorFlow sees no GPU: its CUDA wheels "
        f"(built for {child['build']}) are missing or do not load. Run `make setup GPU=1` "
        "(the gpu section of requirements.lock); TF_CPP_MAX_VLOG_LEVEL=3 shows which library "
        "failed to load."
    )
    result = child[name]
    assert "error" not in result, result["error"]
    return result


def test_tensorflow_finds_the_gpus(child):
    _found(child, "gpus")


def test_strategy_has_one_replica_per_gpu(child):
    strategy = _found(child, "strategy")
    assert strategy["replicas"] == len(child["gpus"])
    assert all("GPU" in d for d in strategy["devices"]), strategy["devices"]


def test_matmul_runs_on_gpu0(child):
    matmul = _found(child, "matmul")
    assert matmul["device"].endswith("GPU:0"), matmul["device"]
    assert matmul["relative_error"] < 1e-2  # TF32 tensor cores round to 10-bit mantissas


@pytest.mark.parametrize("precision", PRECISIONS)
def test_one_training_step_on_the_gpu(child, precision):
    step = _found(child, precision)
    assert step["iterations"] == 1
    assert np.isfinite(step["loss"]) and step["loss"] > 0
    assert all("GPU" in d for d in step["variable_devices"]), step["variable_devices"]
    if precision == "mixed_bfloat16":
        assert "bfloat16" in step["compute_dtypes"], step["compute_dtypes"]
    else:
        assert step["compute_dtypes"] == ["float32"], step["compute_dtypes"]
