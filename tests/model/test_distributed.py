"""tf.distribute, each in processes of its own: a Keras step under MirroredStrategy, the Trainer's
train() for several epochs on two logical CPU devices, and a two-worker MultiWorkerMirroredStrategy
cluster on localhost whose workers end with identical weights."""

import glob
import json
import os
import subprocess
import sys

import pytest

from model import keras_env
from tests.helpers import free_ports, split_sizes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = keras_env.child_env(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def test_mirrored_strategy_train_step():
    proc = subprocess.run(
        [sys.executable, "-m", "tests.model.mirrored_train_step"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("OK "), proc.stdout


def _trainer_inputs(pipeline_run) -> list[str]:
    """The Transform graph and the raw examples' splits, as the Trainer gets them."""
    root = pipeline_run["pipeline_root"]
    (graph,) = glob.glob(f"{root}/Transform/transform_graph/*")
    (examples,) = glob.glob(f"{root}/VideoExampleGen/examples/*")
    return [graph, f"{examples}/Split-train/*", f"{examples}/Split-eval/*"]


def _start(mode, pipeline_run, out, env=ENV):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.model.distributed_training",
            mode,
            *_trainer_inputs(pipeline_run),
            str(out),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc, out):
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_several_epochs_with_validation_under_mirrored_strategy(pipeline_run, tmp_path):
    """The 2022 port failed after epoch 1 under MirroredStrategy; here 3 epochs each validate."""
    out = tmp_path / "mirrored.json"
    result = _finish(_start("mirrored", pipeline_run, out), out)
    assert result["strategy"] == "MirroredStrategy" and result["replicas"] == 2
    train_clips, _ = split_sizes()
    assert train_clips % 10  # the global batch does not divide the training split
    assert result["train_examples"] == train_clips
    assert result["steps_per_epoch"] == train_clips // 10
    history = result["history"]
    assert len(history["loss"]) == len(history["val_loss"]) == len(history["val_accuracy"]) == 3
    assert result["iterations"] == 3 * result["steps_per_epoch"]


@pytest.mark.slow
def test_two_workers_on_localhost_end_with_identical_weights(pipeline_run, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(ENV, TF_CONFIG=json.dumps(tf_config))
        procs.append(
            (
                _start("worker", pipeline_run, tmp_path / f"w{index}.json", env),
                tmp_path / f"w{index}.json",
            )
        )
    results = [_finish(proc, out) for proc, out in procs]
    for result in results:
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy.
        assert result["multi_worker"] and result["replicas"] == 2
        assert len(result["history"]["val_accuracy"]) == 2
        assert result["iterations"] == 2 * result["steps_per_epoch"] > 0
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]


@pytest.mark.slow
def test_a_killed_trainer_resumes_from_its_checkpoint(pipeline_run, tmp_path):
    """SIGKILL mid-training, then the same command again: it continues, it does not restart.

    Weights are not compared with an uninterrupted run: the input pipeline's random crops and
    shuffles are not part of the checkpoint, so only the counters can be exact.
    """
    import signal
    import time

    run_dir, out = tmp_path / "run", tmp_path / "out.json"
    args = [
        sys.executable,
        "-m",
        "tests.model.resumable_training",
        *_trainer_inputs(pipeline_run),
        str(run_dir),
        str(out),
    ]
    first = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True)
    per_epoch = split_sizes()[0] // 8
    kill_at = per_epoch + 6  # into epoch 2, two checkpoints (every 3 steps) after epoch 1
    steps = 0
    for line in first.stdout:  # "step N" after each training step
        if line.startswith("step "):
            steps = int(line.split()[1])
            if steps >= kill_at:
                break
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert steps >= kill_at and not out.exists()
    time.sleep(1)
    second = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-4000:]
    result = json.loads(out.read_text())
    total = 3 * result["steps_per_epoch"]
    assert result["head_iterations"] == result["backbone_iterations"] == total
    # Resumed at its last checkpoint (every 3 steps): not from zero.
    assert result["steps_run"] <= total - (kill_at - 3)
    assert result["epochs_logged"] == 2  # epochs 2 and 3; epoch 1 finished before the kill
